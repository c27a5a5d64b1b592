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

/// Three `flockd agent fl-member` processes, each with its own key and its own CSV of
/// simulated glucose patients (labeled so), run a two-round FL Alliance task against a
/// `flockd node` process.
#[test]
fn fl_member_processes_run_an_alliance() {
    use flock_agents::{alliance::FlModel, fetch::Artifacts};
    use flock_ledger::{
        alliance::{Aggregation, AlliancePhases, AllianceTaskSpec, Privacy},
        TxKind,
    };
    use flock_primitives::{Amount, Ppm};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let o = flockd().args(args).env("FLOCK_LOG", "warn").output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let names = ["creator", "m-1", "m-2", "m-3"];
    for n in names {
        run(&["keys", "new", n, "--data-dir", d]);
    }
    let mut g = vec!["genesis", "--data-dir", d, "--chain-id", "fl-agents"];
    let allocs: Vec<String> = names.iter().map(|n| format!("{n}=100000")).collect();
    for a in &allocs {
        g.extend(["--alloc", a.as_str()]);
    }
    run(&g);
    let node = NodeProc::start(dir.path(), &dir.path().join("genesis.json"), 40);
    // Each member's private data: its own simulated patients, as CSV.
    for (i, _) in names[1..].iter().enumerate() {
        let seeds = [100 + i as u64 * 10, 101 + i as u64 * 10];
        let (t, _) = flock_ml_data::glucose::cohort_dataset(&seeds, 2, 12);
        let f = std::fs::File::create(dir.path().join(format!("m{i}.csv"))).unwrap();
        flock_ml_data::to_csv(f, &t).unwrap();
    }
    let t_label = flock_ml_data::glucose::cohort_dataset(&[1], 1, 12).0.label_name;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let creator = flock_node::Keystore::open(dir.path()).get("creator").unwrap();
    let task = rt.block_on(async {
        let model = FlModel::regressor(14, vec![16]).init(3).unwrap();
        let h = Artifacts::new(&node.url, &dir.path().join("c"))
            .upload(model.to_safetensors_default())
            .await
            .unwrap();
        let spec = AllianceTaskSpec {
            title: "glucose (simulated)".into(),
            model: h,
            rounds: 2,
            min_members: 3,
            max_members: 3,
            min_stake: Amount::flock(500),
            proposer_ratio: Ppm::percent(50).unwrap(),
            slash_rate: Ppm::percent(10).unwrap(),
            proposer_share: Ppm::percent(50).unwrap(),
            reward_pool: Amount::flock(1_000),
            aggregation: Aggregation::Fedavg,
            privacy: Privacy::Plaintext,
            phases: AlliancePhases { join: 150, propose: 60, vote_commit: 60, vote_reveal: 30 },
        };
        let v = flock_node::Client::new(&node.url)
            .send_and_wait(&creator, TxKind::AllianceCreate { spec: Box::new(spec) })
            .await
            .unwrap();
        v["receipt"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "alliance_task_created")
            .unwrap()["task"]
            .as_u64()
            .unwrap()
    });
    let members: Vec<_> = (0..3)
        .map(|i| {
            let data = dir.path().join(format!("m{i}.csv"));
            flockd()
                .args([
                    "agent",
                    "fl-member",
                    "--from",
                    names[i + 1],
                    "--data-dir",
                    d,
                    "--node",
                    &node.url,
                    "--task",
                    &task.to_string(),
                    "--data",
                    data.to_str().unwrap(),
                    "--label",
                    &t_label,
                    "--stake",
                    "1000 FLOCK",
                ])
                .env("FLOCK_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    for m in members {
        let o = m.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            out.contains("joined task") && out.contains("round 0:") && out.contains("round 1:"),
            "{out}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    // The members are done once they revealed; the last round is decided at its last block.
    let v: serde_json::Value = rt.block_on(async {
        let c = flock_node::Client::new(&node.url);
        for _ in 0..200 {
            let v = c.get(&format!("/v1/alliance/tasks/{task}")).await.unwrap();
            if v["status"] == "finished" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.get(&format!("/v1/alliance/tasks/{task}")).await.unwrap()
    });
    assert_eq!(v["rounds_done"], 2, "{v}");
    assert!(v["history"].as_array().unwrap().iter().any(|h| h["accepted"] == true), "{v}");
}
