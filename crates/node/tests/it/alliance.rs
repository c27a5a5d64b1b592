//! The FL Alliance read API over a task with real joins and a role draw.

use crate::common::*;
use axum::{
    body::{to_bytes, Body},
    http::{Request, StatusCode},
    Router,
};
use flock_ledger::{
    alliance::{Aggregation, AlliancePhases, AllianceTaskSpec, Privacy},
    TxKind,
};
use flock_node::api::router;
use flock_primitives::{Amount, Hash, Ppm};
use serde_json::Value;
use tower::ServiceExt;

async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let s = resp.status();
    let b = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test]
async fn alliance_task_rounds_and_members_are_visible() {
    let (node, seq, k) = node();
    let app = router(node.clone());
    let spec = AllianceTaskSpec {
        title: "glucose".into(),
        model: Hash::of(b"init"),
        rounds: 2,
        min_members: 2,
        max_members: 4,
        min_stake: Amount::flock(10),
        proposer_ratio: Ppm::percent(50).unwrap(),
        slash_rate: Ppm::percent(10).unwrap(),
        proposer_share: Ppm::percent(50).unwrap(),
        reward_pool: Amount::flock(500),
        aggregation: Aggregation::Fedavg,
        privacy: Privacy::Plaintext,
        phases: AlliancePhases { join: 3, propose: 2, vote_commit: 2, vote_reveal: 2 },
    };
    node.submit(tx(&k[0], 0, TxKind::AllianceCreate { spec: Box::new(spec) })).unwrap();
    produce(&node, &seq);
    for (i, key) in k[1..4].iter().enumerate() {
        node.submit(tx(
            key,
            0,
            TxKind::AllianceJoin { task: 1, amount: Amount::flock(20 + i as u64) },
        ))
        .unwrap();
    }
    for _ in 0..4 {
        produce(&node, &seq);
    }
    let (s, list) = get(&app, "/v1/alliance/tasks").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["tasks"][0]["status"], "running", "{list}");
    assert_eq!(list["tasks"][0]["members"], 3);
    let (_, d) = get(&app, "/v1/alliance/tasks/1").await;
    assert_eq!(d["member_list"].as_array().unwrap().len(), 3);
    assert_eq!(d["global_model"], Hash::of(b"init").to_string());
    let (_, r) = get(&app, "/v1/alliance/tasks/1/rounds/0").await;
    let members = r["draw"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{r}");
    assert!(members.iter().any(|m| m[2] == "proposer") && members.iter().any(|m| m[2] == "voter"));
    assert_eq!(get(&app, "/v1/alliance/tasks/2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/v1/alliance/tasks/1/rounds/9").await.0, StatusCode::NOT_FOUND);
}
