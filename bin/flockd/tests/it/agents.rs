//! The AI Arena agents as separate `flockd agent` processes, each with its own key, talking
//! to a `flockd node` process over HTTP, on a tiny model created by `flockd model init`.

use crate::harness::*;
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

#[test]
fn agent_processes_run_a_round() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let o = flockd().args(args).env("FLOCK_LOG", "warn").output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for name in ["creator", "trainer", "val-1", "val-2"] {
        run(&["keys", "new", name, "--data-dir", d]);
    }
    run(&[
        "genesis",
        "--data-dir",
        d,
        "--chain-id",
        "agents",
        "--alloc",
        "creator=100000",
        "--alloc",
        "trainer=10000",
        "--alloc",
        "val-1=10000",
        "--alloc",
        "val-2=10000",
    ]);
    let model = dir.path().join("model");
    let out = run(&[
        "model",
        "init",
        "--out",
        model.to_str().unwrap(),
        "--train",
        "96",
        "--validation",
        "16",
        "--pretrain-steps",
        "20",
    ]);
    assert!(out.contains("bits per byte"), "{out}");
    let node = NodeProc::start(dir.path(), &dir.path().join("genesis.json"), 40);
    let url = node.url.clone();
    let m = |f: &str| model.join(f).to_str().unwrap().to_owned();
    let spawn = |args: Vec<String>| {
        flockd()
            .args(&args)
            .env("FLOCK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let common = |key: &str| {
        vec![
            "--from".to_owned(),
            key.to_owned(),
            "--data-dir".into(),
            d.to_owned(),
            "--node".into(),
            url.clone(),
        ]
    };
    let mut creator = spawn(
        ["agent", "creator"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(common("creator"))
            .chain([
                "--base-model".into(),
                m(""),
                "--train".into(),
                m("train.jsonl"),
                "--validation".into(),
                m("validation.jsonl"),
                "--train-blocks".into(),
                "250".into(),
                "--validate-blocks".into(),
                "200".into(),
                "--validators".into(),
                "2".into(),
            ])
            .collect(),
    );
    let c = http();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&c, &format!("{url}/v1/arena/tasks/1")).0 != 200 {
        assert!(Instant::now() < deadline, "the creator opened no task");
        std::thread::sleep(Duration::from_millis(100));
    }
    let task = ["--task".to_owned(), "1".into(), "--stake".into(), "200".into()];
    let trainer = spawn(
        ["agent", "trainer"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(common("trainer"))
            .chain(task.clone())
            .chain(["--steps".into(), "12".into()])
            .collect(),
    );
    let v1 = spawn(
        ["agent", "validator"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(common("val-1"))
            .chain(task.clone())
            .collect(),
    );
    let v2 = spawn(
        ["agent", "validator"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(common("val-2"))
            .chain(task)
            .collect(),
    );
    for (name, p) in [("trainer", trainer), ("val-1", v1), ("val-2", v2)] {
        let o = p.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{name}: {out}\n{}", String::from_utf8_lossy(&o.stderr));
        if name == "trainer" {
            assert!(out.contains("submitted"), "{out}");
        } else {
            assert!(out.contains("committed and revealed"), "{out}");
            assert!(out.contains("BPB"), "{out}");
        }
    }
    assert!(creator.wait().unwrap().success());
    // Settlement: the one submission is ranked with the validators' consensus BPB and paid.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lb = loop {
        let (_, lb) = get(&c, &format!("{url}/v1/arena/tasks/1/leaderboard"));
        if !lb["result"].is_null() {
            break lb;
        }
        assert!(Instant::now() < deadline, "no settlement");
        std::thread::sleep(Duration::from_millis(200));
    };
    let top = &lb["result"]["ranking"][0];
    assert!(top["score"].as_u64().unwrap() < 5_000_000, "{lb}");
    assert_ne!(top["reward"], "0", "{lb}");
    node.stop();
}
