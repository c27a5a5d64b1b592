//! AI Arena read API: tasks, phases, submissions, draws, leaderboards, rewards.

use crate::api::{parse_address, ApiError, ApiResult, AppState};
use axum::{
    extract::{Path, Query, State},
    routing::get,
    Json, Router,
};
use flock_ledger::{
    arena::{node_target, validator_target, ArenaTask, Phase},
    State as LedgerState,
};
use flock_primitives::{Address, Amount, Height};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/arena/tasks", get(list))
        .route("/v1/arena/tasks/{id}", get(detail))
        .route("/v1/arena/tasks/{id}/rounds/{round}", get(round))
        .route("/v1/arena/tasks/{id}/leaderboard", get(leaderboard))
        .route("/v1/arena/tasks/{id}/assignments", get(assignments))
        .route("/v1/arena/tasks/{id}/rewards", get(rewards))
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::bad("bad_task", format!("task id {s:?} is not a number")))
}

fn task_of(st: &LedgerState, id: u64) -> Result<ArenaTask, ApiError> {
    st.arena_task(id).map_err(|e| ApiError::not_found(e.to_string()))
}

fn phase_json(t: &ArenaTask, now: Height) -> Value {
    let next = now.next();
    let phase = t.phase_at(next);
    let round = match phase {
        Phase::Train { round }
        | Phase::Reveal { round }
        | Phase::ValidateCommit { round }
        | Phase::ValidateReveal { round } => Some(round),
        _ => None,
    };
    // Blocks until the phase of the next block changes.
    let mut h = next;
    let mut left = 0u64;
    while t.phase_at(h) == phase && left < 10_000_000 && phase != Phase::Ended {
        h = h.next();
        left += 1;
    }
    json!({ "phase": phase.name(), "round": round, "blocks_left": left, "next_height": next })
}

fn summary(st: &LedgerState, t: &ArenaTask, now: Height) -> Value {
    let stake =
        |target| -> Amount { Amount(st.target_stakers(&target).iter().map(|(_, a)| a.0).sum()) };
    json!({
        "id": t.id,
        "title": t.spec.title,
        "creator": t.creator,
        "status": t.status,
        "metric": t.spec.metric,
        "start": t.start,
        "end": t.end(),
        "rounds": t.rounds(),
        "rounds_settled": t.rounds_settled,
        "now": phase_json(t, now),
        "pool": t.pool,
        "deposit_left": t.deposit_left,
        "node_stake": stake(node_target(t.id)),
        "validator_stake": stake(validator_target(t.id)),
    })
}

async fn list(State(s): State<AppState>) -> Json<Value> {
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let now = c.info().height;
        let tasks: Vec<Value> = st.arena_tasks.iter().map(|(_, t)| summary(st, t, now)).collect();
        Json(json!({ "height": now, "tasks": tasks }))
    })
}

async fn detail(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let t = task_of(st, id)?;
        let mut v = summary(st, &t, c.info().height);
        v["spec"] = json!(t.spec);
        v["node_target"] = json!(node_target(id));
        v["validator_target"] = json!(validator_target(id));
        v["nodes"] = json!(st
            .target_stakers(&node_target(id))
            .iter()
            .map(|(a, s)| json!({ "address": a, "stake": s }))
            .collect::<Vec<_>>());
        v["validators"] = json!(st
            .target_stakers(&validator_target(id))
            .iter()
            .map(|(a, s)| json!({ "address": a, "stake": s }))
            .collect::<Vec<_>>());
        Ok(Json(v))
    })
}

fn round_json(st: &LedgerState, id: u64, r: u32) -> Value {
    let commits: Vec<Value> = st
        .arena_commits
        .range((id, r, Address([0; 20]))..=(id, r, Address([0xff; 20])))
        .map(|((_, _, node), c)| json!({ "node": node, "height": c.height }))
        .collect();
    let submissions: Vec<Value> = st
        .round_submissions(id, r)
        .into_iter()
        .map(|(i, sub)| {
            let scores: Vec<Value> = st
                .arena_scores
                .range((id, r, i, Address([0; 20]))..=(id, r, i, Address([0xff; 20])))
                .map(|((_, _, _, v), sc)| json!({ "validator": v, "score": sc }))
                .collect();
            json!({
                "index": i,
                "node": sub.node,
                "artifact": sub.artifact,
                "commit_height": sub.commit_height,
                "validators": st.arena_assignments.get(&(id, r, i)),
                "scores": scores,
            })
        })
        .collect();
    json!({
        "round": r,
        "commits": commits,
        "submissions": submissions,
        "validation_set": st.arena_validation.get(&(id, r)),
        "draw": st.arena_draws.get(&(id, r)),
        "result": st.arena_results.get(&(id, r)),
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
        if r >= t.rounds() {
            return Err(ApiError::not_found(format!("task {id} has {} rounds", t.rounds())));
        }
        Ok(Json(round_json(st, id, r)))
    })
}

async fn leaderboard(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let t = task_of(st, id)?;
        let last = (0..t.rounds()).rev().find(|r| st.arena_results.contains(&(id, *r)));
        let Some(r) = last else {
            return Ok(Json(json!({ "task": id, "round": null, "ranking": [], "validators": [] })));
        };
        let res = st.arena_results.get(&(id, r)).cloned();
        Ok(Json(json!({ "task": id, "round": r, "metric": t.spec.metric, "result": res })))
    })
}

#[derive(Deserialize)]
struct AssignQuery {
    validator: Option<String>,
    round: Option<u32>,
}

async fn assignments(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AssignQuery>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let who = q.validator.as_deref().map(parse_address).transpose()?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let t = task_of(st, id)?;
        let r = match q.round {
            Some(r) => r,
            None => match t.phase_at(c.info().height.next()) {
                Phase::Train { round } | Phase::Reveal { round } | Phase::ValidateCommit { round } | Phase::ValidateReveal { round } => round,
                Phase::NotStarted => 0,
                Phase::Ended => t.rounds().saturating_sub(1),
            },
        };
        let list: Vec<Value> = st
            .arena_assignments
            .range((id, r, 0)..=(id, r, u32::MAX))
            .filter(|(_, vs)| who.is_none_or(|w| vs.contains(&w)))
            .map(|((_, _, i), vs)| {
                let sub = st.arena_submissions.get(&(id, r, *i));
                json!({ "submission": i, "artifact": sub.map(|s| s.artifact), "node": sub.map(|s| s.node), "validators": vs })
            })
            .collect();
        Ok(Json(json!({
            "task": id,
            "round": r,
            "validation_set": st.arena_validation.get(&(id, r)),
            "draw": st.arena_draws.get(&(id, r)),
            "assignments": list,
        })))
    })
}

async fn rewards(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let t = task_of(st, id)?;
        #[derive(Default)]
        struct Row {
            role: &'static str,
            reward: u128,
            slashed: u128,
            rounds: u32,
        }
        let mut rows: BTreeMap<Address, Row> = BTreeMap::new();
        for r in 0..t.rounds() {
            let Some(res) = st.arena_results.get(&(id, r)) else { continue };
            for x in &res.ranking {
                let e = rows.entry(x.node).or_default();
                e.role = "training_node";
                e.reward += x.reward.0;
                e.rounds += 1;
            }
            for v in &res.validators {
                let e = rows.entry(v.validator).or_default();
                e.role = "validator";
                e.reward += v.reward.0;
                e.slashed += v.slashed.0;
                e.rounds += 1;
            }
        }
        let list: Vec<Value> = rows
            .into_iter()
            .map(|(a, r)| json!({ "address": a, "role": r.role, "reward": Amount(r.reward), "slashed": Amount(r.slashed), "rounds": r.rounds }))
            .collect();
        Ok(Json(json!({ "task": id, "participants": list })))
    })
}
