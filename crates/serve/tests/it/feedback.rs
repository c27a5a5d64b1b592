//! Feedback on served completions, exported as FLock chat JSONL.

use crate::util::{chat_body, env, post};
use flock_ml_data::chat::{load_jsonl, JsonlLimits, Role};
use flock_primitives::Amount;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_round_trip_and_export() {
    let e = env("feedback", Amount::flock(10)).await;
    let (_serve, url) = e.serve(e.config()).await;
    let chat = "/v1/chat/completions";
    let mut ids = Vec::new();
    let mut answers = Vec::new();
    for (i, q) in ["How many customers?", "List the orders.", "Top products?"].iter().enumerate() {
        // Sampled (the untrained model's greedy answer is blank lines).
        let mut body = chat_body(q, 6);
        body["temperature"] = json!(1.0);
        body["seed"] = json!(i);
        let r = post(&url, chat, Some(&e.key), body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
        answers.push(r.body["choices"][0]["message"]["content"].as_str().unwrap().to_owned());
    }
    let fb = "/v1/feedback";
    // Rated 5: the answer becomes a training example.
    let r = post(&url, fb, Some(&e.key), json!({"id": ids[0], "rating": 5})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stored"], true);
    // Rated 1 with a correction: the correction becomes the example.
    let fix = "SELECT * FROM orders;";
    let r =
        post(&url, fb, Some(&e.key), json!({"id": ids[1], "rating": 1, "correction": fix})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Rated 2 without a correction: stored, but no example.
    let r = post(&url, fb, Some(&e.key), json!({"id": ids[2], "rating": 2})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Refusals.
    let r = post(&url, fb, Some(&e.key), json!({"id": ids[0], "rating": 6})).await;
    assert_eq!((r.status, r.code()), (400, "invalid_value"));
    let r = post(&url, fb, Some(&e.key), json!({"id": "chatcmpl-nope", "rating": 5})).await;
    assert_eq!((r.status, r.code()), (404, "completion_not_found"));
    let r = post(&url, fb, Some(&e.poor_key), json!({"id": ids[0], "rating": 1})).await;
    assert_eq!((r.status, r.code()), (404, "completion_not_found"), "another account's completion");
    let r = post(&url, fb, None, json!({"id": ids[0], "rating": 5})).await;
    assert_eq!(r.status, 401);
    let bad_fix = json!({"id": ids[0], "rating": 1, "correction": "<|im_start|>x"});
    assert_eq!(post(&url, fb, Some(&e.key), bad_fix).await.status, 400);

    let mut out = Vec::new();
    let n = flock_serve::export_feedback(&e.dir.path().join("node"), "tiny", &mut out).unwrap();
    assert_eq!(n, 2, "{answers:?} {}", String::from_utf8_lossy(&out));
    let examples = load_jsonl(out.as_slice(), &JsonlLimits::default()).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0].system.as_deref(), Some("Answer with SQL."));
    assert_eq!(examples[0].conversations[0].role, Role::User);
    assert_eq!(examples[0].conversations[0].content, "How many customers?");
    let reply = &examples[0].conversations[1];
    assert_eq!((reply.role, reply.content.as_str()), (Role::Assistant, answers[0].as_str()));
    assert_eq!(examples[1].conversations[1].content, fix);
    let text = String::from_utf8(out).unwrap();
    assert!(text
        .lines()
        .all(|l| l.starts_with("{\"system\":") || l.starts_with("{\"conversations\":")));
    // Another listing has no feedback.
    let mut none = Vec::new();
    assert_eq!(
        flock_serve::export_feedback(&e.dir.path().join("node"), "other", &mut none).unwrap(),
        0
    );
    assert!(none.is_empty());
}
