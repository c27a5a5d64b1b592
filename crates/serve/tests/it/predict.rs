//! `/v1/predict` with a small MLP, metered one call per row.

use crate::{fixture, util::post};
use flock_ledger::market::{ModelKind, Pricing};
use flock_ml::mlp::{Mlp, MlpTask};
use flock_primitives::Amount;
use flock_serve::{predict::PredictModel, save_predict_model, PredictSpec, PredictTask, Serve};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_serves_an_mlp_and_meters_rows() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fixture::Keys::new("predict");
    let running = fixture::start_node(dir.path(), "predict", &keys, 40, None).await.unwrap();
    let node = &running.node;
    // A regression MLP and a classifier with labels.
    let reg_dir = dir.path().join("reg");
    let spec = PredictSpec {
        format: "flock-mlp-v1".into(),
        inputs: 3,
        hidden: vec![8],
        task: PredictTask::Regression { outputs: 2 },
    };
    let mlp = Mlp::new(3, &[8], MlpTask::Regression { outputs: 2 }, 11, &flock_ml::cpu());
    save_predict_model(&reg_dir, &spec, &mlp).unwrap();
    let cls_dir = dir.path().join("cls");
    let labels = vec!["low".to_owned(), "mid".to_owned(), "high".to_owned()];
    let cls = PredictSpec {
        format: "flock-mlp-v1".into(),
        inputs: 2,
        hidden: vec![4],
        task: PredictTask::Classification { classes: 3, labels: labels.clone() },
    };
    let mlp = Mlp::new(2, &[4], MlpTask::Classification { classes: 3 }, 12, &flock_ml::cpu());
    save_predict_model(&cls_dir, &cls, &mlp).unwrap();
    let per_row = Pricing { per_1k_tokens: Amount::ZERO, per_call: Amount(1_000_000) };
    fixture::list(node, &keys, "glucose-mlp", &reg_dir, ModelKind::Predict, per_row).await;
    fixture::list(node, &keys, "risk-cls", &cls_dir, ModelKind::Predict, per_row).await;
    let key = fixture::consumer_key(node, &keys.consumer, Amount::flock(1), "p").await;

    let cfg = fixture::serve_config(
        &keys,
        dir.path(),
        &[("glucose-mlp", reg_dir.as_path()), ("risk-cls", cls_dir.as_path())],
    );
    let serve = Serve::start_manual(node.clone(), cfg).unwrap();
    let url = fixture::serve_http(serve.router()).await;

    let rows = vec![vec![1.0f32, 2.0, 3.0], vec![0.0, -1.0, 0.5]];
    let r = post(&url, "/v1/predict", Some(&key), json!({"model": "glucose-mlp", "inputs": rows}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["object"], "predict");
    let want = PredictModel::load(&reg_dir).unwrap().predict(&rows).unwrap();
    let got: Vec<Vec<f32>> = serde_json::from_value(r.body["outputs"].clone()).unwrap();
    assert_eq!(got, want);
    assert_eq!(r.body["usage"]["calls"], 2);
    assert!(r.headers["x-flock-provenance"].to_str().unwrap().starts_with("glucose-mlp@"));
    assert_eq!(r.body["flock"]["cost"], json!(Amount(2_000_000)));

    let r =
        post(&url, "/v1/predict", Some(&key), json!({"model": "risk-cls", "inputs": [[0.3, 0.9]]}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = &r.body["predictions"][0];
    assert!(labels.iter().any(|l| p["label"] == l.as_str()), "{p}");

    // Bad input: wrong width, no rows, not numbers, a language endpoint.
    let bad = [
        json!({"model": "glucose-mlp", "inputs": [[1.0, 2.0]]}),
        json!({"model": "glucose-mlp", "inputs": []}),
        json!({"model": "glucose-mlp"}),
    ];
    for b in bad {
        let r = post(&url, "/v1/predict", Some(&key), b).await;
        assert_eq!((r.status, r.code()), (400, "invalid_value"), "{}", r.text);
    }
    let r = post(
        &url,
        "/v1/predict",
        Some(&key),
        json!({"model": "glucose-mlp", "inputs": [["a", 1, 2]]}),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    let chat = json!({"model": "glucose-mlp", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post(&url, "/v1/chat/completions", Some(&key), chat).await.status, 400);

    // Three rows served: three calls charged.
    let consumer = keys.consumer.address();
    let before = node.with_chain(|c| c.ledger().state().market_escrow(&consumer).available);
    assert!(serve.settle_now(Duration::from_secs(10)).await);
    let after = node.with_chain(|c| c.ledger().state().market_escrow(&consumer).available);
    assert_eq!(before.0 - after.0, 3_000_000);
}
