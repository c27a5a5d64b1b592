//! FL Alliance read API: tasks, rounds (roles, proposals, votes, outcome, global model),
//! members' stakes and rewards.

use crate::api::{ApiError, ApiResult, AppState};
use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use flock_ledger::{
    alliance::{member_target, AlliancePhase, AllianceTask},
    State as LedgerState,
};
use flock_primitives::{Address, Amount, Height};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alliance/tasks", get(list))
        .route("/v1/alliance/tasks/{id}", get(detail))
        .route("/v1/alliance/tasks/{id}/rounds/{round}", get(round))
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::bad("bad_task", format!("task id {s:?} is not a number")))
}

fn task_of(st: &LedgerState, id: u64) -> Result<AllianceTask, ApiError> {
    st.alliance_task(id).map_err(|e| ApiError::not_found(e.to_string()))
}

fn summary(st: &LedgerState, t: &AllianceTask, now: Height) -> Value {
    let phase = t.phase_at(now.next());
    let round = match phase {
        AlliancePhase::Propose { round }
        | AlliancePhase::VoteCommit { round }
        | AlliancePhase::VoteReveal { round } => Some(round),
        _ => None,
    };
    json!({
        "id": t.id,
        "title": t.spec.title,
        "creator": t.creator,
        "status": t.status,
        "now": { "phase": phase.name(), "round": round, "next_height": now.next() },
        "rounds": t.spec.rounds,
        "rounds_done": t.rounds_done,
        "rounds_start": t.rounds_start(),
        "end": t.end(),
        "global_model": t.global_model,
        "pool": t.pool,
        "members": st.alliance_members(t.id).len(),
    })
}

async fn list(State(s): State<AppState>) -> Json<Value> {
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let now = c.info().height;
        let tasks: Vec<Value> =
            st.alliance_tasks.iter().map(|(_, t)| summary(st, t, now)).collect();
        Json(json!({ "height": now, "tasks": tasks }))
    })
}

async fn detail(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let t = task_of(st, id)?;
        let mut rewards: BTreeMap<Address, (u128, u128)> = BTreeMap::new();
        let mut history = Vec::new();
        for r in 0..t.spec.rounds {
            let Some(res) = st.alliance_rounds.get(&(id, r)) else { continue };
            for (a, amt) in &res.rewards {
                rewards.entry(*a).or_default().0 += amt.0;
            }
            for (a, amt, _) in &res.slashes {
                rewards.entry(*a).or_default().1 += amt.0;
            }
            history.push(json!({ "round": r, "accepted": res.accepted, "adopted": res.adopted, "score": res.score, "tally": res.tally.to_string() }));
        }
        let members: Vec<Value> = st
            .alliance_members(id)
            .into_iter()
            .map(|(a, stake)| {
                let (r, sl) = rewards.get(&a).copied().unwrap_or_default();
                json!({ "address": a, "stake": stake, "own_stake": st.own_stake(&a, &member_target(id)), "rewards": Amount(r), "slashed": Amount(sl) })
            })
            .collect();
        let mask_keys: Vec<Value> = st
            .alliance_mask_keys
            .range((id, Address([0; 20]))..=(id, Address([0xff; 20])))
            .map(|((_, a), k)| json!({ "member": a, "key": k }))
            .collect();
        let mut v = summary(st, &t, c.info().height);
        v["spec"] = json!(t.spec);
        v["mask_keys"] = json!(mask_keys);
        v["member_list"] = json!(members);
        v["history"] = json!(history);
        Ok(Json(v))
    })
}

async fn round(State(s): State<AppState>, Path((id, r)): Path<(String, String)>) -> ApiResult {
    let id = parse_id(&id)?;
    let r: u32 = r
        .parse()
        .map_err(|_| ApiError::bad("bad_round", format!("round {r:?} is not a number")))?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let t = task_of(st, id)?;
        if r >= t.spec.rounds {
            return Err(ApiError::not_found(format!("task {id} has {} rounds", t.spec.rounds)));
        }
        let proposals: Vec<Value> = st
            .alliance_proposals
            .range((id, r, 0)..=(id, r, u32::MAX))
            .map(|((_, _, i), (p, h))| json!({ "index": i, "proposer": p, "update": h }))
            .collect();
        let votes: Vec<Value> = st
            .alliance_votes
            .range((id, r, Address([0; 20]))..=(id, r, Address([0xff; 20])))
            .map(|((_, _, v), vote)| json!({ "voter": v, "vote": vote }))
            .collect();
        let committed: Vec<Address> = st
            .alliance_vote_commits
            .range((id, r, Address([0; 20]))..=(id, r, Address([0xff; 20])))
            .map(|((_, _, v), _)| *v)
            .collect();
        Ok(Json(json!({
            "task": id,
            "round": r,
            "draw": st.alliance_draws.get(&(id, r)),
            "proposals": proposals,
            "vote_commits": committed,
            "votes": votes,
            "dropped": st.alliance_dropped(id, r),
            "unmasks": st
                .alliance_unmasks_of(id, r)
                .into_iter()
                .map(|(p, rv)| json!({ "proposer": p, "reveals": rv }))
                .collect::<Vec<_>>(),
            "outcome": st.alliance_rounds.get(&(id, r)),
        })))
    })
}
