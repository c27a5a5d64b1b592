//! One AI Arena round through the HTTP API (synthetic artifacts and scores: the ML agents
//! drive the same endpoints with real models).

use crate::common::*;
use axum::{
    body::{to_bytes, Body},
    http::{Request, StatusCode},
    Router,
};
use flock_ledger::{
    arena::{
        node_target, score_commitment, submission_commitment, validation_commitment,
        validator_target, ArenaTaskSpec, Metric, Phases, Score,
    },
    TxKind,
};
use flock_node::{api::router, Node, SoloSequencer};
use flock_primitives::{Amount, Hash, Keypair, Ppm};
use serde_json::Value;
use tower::ServiceExt;

async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let s = resp.status();
    let b = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn submit(app: &Router, node: &Node, key: &Keypair, kind: TxKind) {
    let nonce = node.with_mempool(|m| m.next_nonce(&key.address()));
    let t = tx(key, nonce, kind);
    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/txs")
                .header("content-type", "application/octet-stream")
                .body(Body::from(t.encode()))
                .unwrap(),
        )
        .await
        .unwrap();
    let s = resp.status();
    let b = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
}

async fn until_phase(app: &Router, node: &Node, seq: &SoloSequencer, phase: &str) {
    for _ in 0..50 {
        let (_, v) = get(app, "/v1/arena/tasks/1").await;
        if v["now"]["phase"] == phase {
            return;
        }
        produce(node, seq);
    }
    panic!("phase {phase} never came");
}

#[tokio::test]
async fn one_round_through_the_api() {
    let (node, seq, k) = node();
    let app = router(node.clone());
    let (c, n1, n2, v1) = (&k[0], &k[1], &k[2], &k[3]);
    let spec = ArenaTaskSpec {
        title: "api round".into(),
        base_model: Hash::of(b"base"),
        training_set: Hash::of(b"train"),
        validation_commitments: vec![validation_commitment(
            &c.address(),
            0,
            &Hash::of(b"val"),
            &Hash::of(b"s"),
        )],
        max_params: 1_000,
        context_length: 64,
        metric: Metric::Bpb,
        phases: Phases { train: 4, reveal: 2, validate_commit: 2, validate_reveal: 2 },
        min_node_stake: Amount::flock(10),
        min_validator_stake: Amount::flock(10),
        rank_ratio: Ppm::percent(50).unwrap(),
        gamma: Ppm::percent(10).unwrap(),
        delta: Ppm::percent(10).unwrap(),
        validators_per_submission: 1,
        deposit: Amount::flock(500),
    };
    submit(&app, &node, c, TxKind::ArenaCreate { spec: Box::new(spec) }).await;
    submit(&app, &node, n1, TxKind::Stake { target: node_target(1), amount: Amount::flock(50) })
        .await;
    submit(&app, &node, n2, TxKind::Stake { target: node_target(1), amount: Amount::flock(50) })
        .await;
    submit(
        &app,
        &node,
        v1,
        TxKind::Stake { target: validator_target(1), amount: Amount::flock(50) },
    )
    .await;
    produce(&node, &seq);
    let (s, list) = get(&app, "/v1/arena/tasks").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["tasks"][0]["title"], "api round");
    assert_eq!(list["tasks"][0]["now"]["phase"], "train");

    let salt = Hash::of(b"salt");
    let (a1, a2) = (Hash::of(b"model-1"), Hash::of(b"model-2"));
    submit(
        &app,
        &node,
        n1,
        TxKind::ArenaCommit {
            task: 1,
            commitment: submission_commitment(1, 0, &n1.address(), &a1, &salt),
        },
    )
    .await;
    submit(
        &app,
        &node,
        n2,
        TxKind::ArenaCommit {
            task: 1,
            commitment: submission_commitment(1, 0, &n2.address(), &a2, &salt),
        },
    )
    .await;
    produce(&node, &seq);
    until_phase(&app, &node, &seq, "reveal").await;
    submit(&app, &node, n1, TxKind::ArenaReveal { task: 1, artifact: a1, salt }).await;
    submit(&app, &node, n2, TxKind::ArenaReveal { task: 1, artifact: a2, salt }).await;
    submit(
        &app,
        &node,
        c,
        TxKind::ArenaRevealValidation { task: 1, set_hash: Hash::of(b"val"), salt: Hash::of(b"s") },
    )
    .await;
    produce(&node, &seq);
    until_phase(&app, &node, &seq, "validate_commit").await;
    produce(&node, &seq);

    let (_, asg) =
        get(&app, &format!("/v1/arena/tasks/1/assignments?validator={}", v1.address())).await;
    let subs = asg["assignments"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "the only validator is drawn for both: {asg}");
    assert_eq!(asg["validation_set"], Hash::of(b"val").to_string());
    let scores = [Score(1_200_000), Score(900_000)];
    for (i, sc) in scores.iter().enumerate() {
        submit(
            &app,
            &node,
            v1,
            TxKind::ArenaScoreCommit {
                task: 1,
                submission: i as u32,
                commitment: score_commitment(1, 0, i as u32, &v1.address(), *sc, &salt),
            },
        )
        .await;
    }
    produce(&node, &seq);
    until_phase(&app, &node, &seq, "validate_reveal").await;
    for (i, sc) in scores.iter().enumerate() {
        submit(
            &app,
            &node,
            v1,
            TxKind::ArenaScoreReveal { task: 1, submission: i as u32, score: *sc, salt },
        )
        .await;
    }
    produce(&node, &seq);
    until_phase(&app, &node, &seq, "ended").await;

    let (_, lb) = get(&app, "/v1/arena/tasks/1/leaderboard").await;
    let ranking = lb["result"]["ranking"].as_array().unwrap();
    assert_eq!(ranking[0]["node"], n2.address().to_string(), "lower BPB ranks first: {lb}");
    assert_eq!(ranking[0]["score"], 900_000);
    let (_, rw) = get(&app, "/v1/arena/tasks/1/rewards").await;
    let parts = rw["participants"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{rw}");
    let (_, round) = get(&app, "/v1/arena/tasks/1/rounds/0").await;
    assert_eq!(round["submissions"].as_array().unwrap().len(), 2);
    assert_eq!(get(&app, "/v1/arena/tasks/9").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/v1/arena/tasks/x").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/v1/arena/tasks/1/rounds/5").await.0, StatusCode::NOT_FOUND);
    let (_, sup) = get(&app, "/v1/supply").await;
    assert_eq!(sup["conserved"], true);
}
