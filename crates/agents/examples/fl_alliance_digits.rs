//! The FL Alliance protocol on scikit-learn's digits: the "flock alliance" side of
//! `bench/flower/flower_digits.py`, which prepares the CSV splits and runs Flower beside it.
//!
//! Unlike `flock-ml`'s `fl_digits` example (the engine alone), every round here goes through the
//! whole protocol: a node with its ledger and artifact store, one agent per client with its own
//! key and stake, a VRF draw of proposers and voters, updates uploaded to the artifact store,
//! voters aggregating deterministically (FedAvg), evaluating on their own data and voting by
//! commit–reveal, and the ledger deciding, paying and slashing.
//!
//! Run: `cargo run -p flock-agents --example fl_alliance_digits -- DIR ROUNDS [BLOCK_MS]
//! [PROPOSE COMMIT REVEAL]` where DIR holds `client_*.csv` and `test.csv`. Prints one JSON line
//! per decided round: `{"round", "secs", "accuracy", "accepted", "proposers"}`; `secs` is the
//! wall time between decisions, which the phase schedule ((PROPOSE + COMMIT + REVEAL) blocks of
//! BLOCK_MS) bounds from below.

use flock_agents::{
    alliance::{run_member, FlModel, MemberBehaviour},
    arena::AgentCtx,
};
use flock_ledger::{
    alliance::{Aggregation, AlliancePhases, AllianceTaskSpec, Privacy},
    Allocation, Genesis, Params, TxKind,
};
use flock_ml::mlp::{MlpTask, TabularData};
use flock_ml_core::{ArtifactLimits, Update};
use flock_ml_data::{from_csv, CsvLimits, Tabular};
use flock_node::{MempoolLimits, NodeConfig, SequencerKey};
use flock_primitives::{Amount, Hash, Keypair, Ppm};
use std::{
    path::Path,
    time::{Duration, Instant},
};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn load(path: &Path) -> Res<TabularData> {
    let t: Tabular = from_csv(std::fs::File::open(path)?, "label", &CsvLimits::default())?;
    Ok(TabularData {
        n_features: t.feature_names.len(),
        features: t.features.concat(),
        targets: t.labels.clone(),
        n_targets: 1,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("bench/flower/out")).to_owned();
    let rounds = arg(2, 10) as u32;
    let block_ms = arg(3, 20);
    let phases = AlliancePhases {
        join: 10,
        propose: arg(4, 15),
        vote_commit: arg(5, 15),
        vote_reveal: arg(6, 8),
    };
    let mut clients = Vec::new();
    while dir.join(format!("client_{}.csv", clients.len())).exists() {
        clients.push(load(&dir.join(format!("client_{}.csv", clients.len())))?);
    }
    if clients.len() < 3 {
        return Err(format!("need at least 3 client_*.csv in {}", dir.display()).into());
    }
    let test = load(&dir.join("test.csv"))?;
    let n = clients.len();

    // A fresh single-node network whose genesis funds the creator and one key per client.
    let work = tempfile::tempdir()?;
    let keys: Vec<Keypair> = (0..=n).map(|i| Keypair::dev(&format!("digits-{i}"))).collect();
    let seq = SequencerKey::from_seed(*Hash::of(b"fl-alliance-digits").as_bytes());
    let node = flock_node::start(NodeConfig {
        data_dir: work.path().join("node"),
        genesis: Genesis {
            chain_id: "fl-alliance-digits".into(),
            genesis_time_ms: 1_700_000_000_000,
            params: Params { epoch_length: 1_000, ..Params::default() },
            allocations: keys
                .iter()
                .map(|k| Allocation { address: k.address(), amount: Amount::flock(100_000) })
                .collect(),
            targets: vec![],
            sequencer: Some(seq.genesis_entry()),
        },
        listen: "127.0.0.1:0".parse()?,
        block_interval: Duration::from_millis(block_ms),
        sequencer: Some(seq),
        mempool: MempoolLimits::default(),
        fsync: false,
        max_artifact_bytes: 16 << 20,
        artifact_peers: vec![],
    })
    .await?;
    let url = node.url();
    let ctx = |i: usize| {
        let mut c = AgentCtx::new(
            &url,
            keys[i].clone(),
            &work.path().join(format!("a{i}")),
            &format!("client-{i}"),
        );
        c.poll = Duration::from_millis(block_ms.max(10));
        c
    };

    // The same model and local training as the Flower side: 64-128-10, Adam 1e-2, batch 32.
    let model = FlModel {
        inputs: 64,
        hidden: vec![128],
        task: MlpTask::Classification { classes: 10 },
        lr: 1e-2,
        max_grad_norm: None,
    };
    let creator = ctx(0);
    let init = model.init(0)?;
    let layout = init.layout().clone();
    let limits = ArtifactLimits::for_params(layout.numel() as u64);
    let model_hash = creator.artifacts.upload(init.to_safetensors_default()).await?;
    let spec = AllianceTaskSpec {
        title: "digits (scikit-learn), 10 IID clients".into(),
        model: model_hash,
        rounds,
        min_members: n as u32,
        max_members: n as u32,
        min_stake: Amount::flock(500),
        proposer_ratio: Ppm::percent(70)?,
        slash_rate: Ppm::percent(10)?,
        proposer_share: Ppm::percent(50)?,
        reward_pool: Amount::flock(5_000),
        aggregation: Aggregation::Fedavg,
        privacy: Privacy::Plaintext,
        phases,
    };
    let v = creator
        .client
        .send_and_wait(&creator.key, TxKind::AllianceCreate { spec: Box::new(spec) })
        .await?;
    let task = v["receipt"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["event"] == "alliance_task_created"))
        .and_then(|x| x["task"].as_u64())
        .ok_or("no task created")?;
    let mut joins = Vec::new();
    for i in 1..=n {
        let c = ctx(i);
        joins.push(tokio::spawn(async move {
            c.client
                .send_and_wait(&c.key, TxKind::AllianceJoin { task, amount: Amount::flock(1_000) })
                .await
        }));
    }
    for j in joins {
        j.await??;
    }
    let mut members = Vec::new();
    for (i, data) in clients.into_iter().enumerate() {
        let (c, m) = (ctx(i + 1), model.clone());
        // Each client votes with its own data (it never leaves the agent).
        members.push(tokio::spawn(async move {
            run_member(&c, task, &m, &data, &data, MemberBehaviour::Honest, 1).await
        }));
    }

    // Watch the decisions and score each new global model on the test split.
    let mut done = 0u32;
    let mut last = Instant::now();
    let mut started = false;
    while done < rounds {
        let t = creator.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
        if !started && t["status"] == "running" {
            started = true;
            last = Instant::now();
        }
        let now_done = t["rounds_done"].as_u64().unwrap_or(0) as u32;
        while done < now_done {
            let r = creator.client.get(&format!("/v1/alliance/tasks/{task}/rounds/{done}")).await?;
            let global: Hash =
                t["global_model"].as_str().and_then(|h| h.parse().ok()).ok_or("no model")?;
            let u = Update::from_safetensors(
                &creator.artifacts.download(&global).await?,
                &layout,
                &limits,
            )?;
            let acc = model.accuracy(&u, &test)?;
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            println!(
                "{{\"round\": {}, \"secs\": {secs:.6}, \"accuracy\": {acc:.6}, \"accepted\": {}, \"proposers\": {}, \"votes\": {}}}",
                done + 1,
                r["outcome"]["accepted"] == true,
                r["proposals"].as_array().map_or(0, Vec::len),
                r["votes"].as_array().map_or(0, Vec::len)
            );
            done += 1;
        }
        if t["status"] == "finished" || t["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(block_ms.max(10))).await;
    }
    for m in members {
        m.await??;
    }
    let sup = creator.client.get("/v1/supply").await?;
    if sup["conserved"] != true {
        return Err("supply not conserved".into());
    }
    node.shutdown().await?;
    Ok(())
}
