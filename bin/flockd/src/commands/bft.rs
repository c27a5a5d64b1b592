//! `flockd node --bft` (a validator of a BFT committee) and `flockd testnet` (a committee of
//! validator processes on loopback).

use crate::cli::{NodeArgs, TestnetArgs};
use anyhow::{bail, Context};
use flock_ledger::{Allocation, Genesis, Params};
use flock_node::{
    bft::{deal_files, run_validator, CommitteeFile, ValidatorKeyFile, ValidatorProcess},
    MempoolLimits,
};
use flock_primitives::{Amount, Keypair};
use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Runs this process as a validator until Ctrl-C / SIGTERM.
pub(crate) async fn node(a: NodeArgs, genesis: Genesis) -> anyhow::Result<()> {
    if !a.serve.models.is_empty() {
        bail!("--serve is not supported with --bft yet");
    }
    let (Some(key), Some(committee)) = (&a.bft.validator_key, &a.bft.committee) else {
        bail!("--bft needs --validator-key and --committee");
    };
    let cfg = ValidatorProcess {
        data_dir: a.data.data_dir.clone(),
        genesis,
        api_listen: a.listen,
        committee: CommitteeFile::load(committee)?,
        key: ValidatorKeyFile::load(key)?,
        peers: a.bft.peers.clone(),
        mempool: MempoolLimits::default(),
        fsync: !a.no_fsync,
        max_artifact_bytes: a.max_artifact_bytes,
        artifact_peers: a.artifact_peers.clone(),
        on_ready: None,
    };
    // The validator owns a commonware tokio runtime: run it on a thread of its own.
    let thread = std::thread::Builder::new()
        .name("flock-validator".into())
        .spawn(move || run_validator(cfg))?;
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the validator thread panicked"))?
}

/// The dev accounts a testnet genesis funds (`Keypair::dev("testnet-I")`).
pub(crate) fn testnet_accounts() -> Vec<Keypair> {
    (0..8).map(|i| Keypair::dev(&format!("testnet-{i}"))).collect()
}

/// Writes a new network into `dir` (genesis, committee, one data dir and key per validator),
/// unless it already holds one.
fn init(a: &TestnetArgs) -> anyhow::Result<()> {
    let dir = &a.dir;
    if dir.join("committee.json").exists() {
        let c = CommitteeFile::load(&dir.join("committee.json"))?;
        if c.validators.len() != a.nodes as usize {
            bail!(
                "{} holds a network of {} validators, not {}",
                dir.display(),
                c.validators.len(),
                a.nodes
            );
        }
        return Ok(());
    }
    if a.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keystore = flock_node::Keystore::open(dir);
    let mut allocations = Vec::new();
    for (i, k) in testnet_accounts().iter().enumerate() {
        allocations.push(Allocation { address: k.address(), amount: Amount::flock(1_000_000) });
        let _ = keystore.insert(&format!("testnet-{i}"), k);
    }
    let genesis = Genesis {
        chain_id: a.chain_id.clone(),
        genesis_time_ms: SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64,
        params: Params::default(),
        allocations,
        targets: vec![],
        sequencer: None,
    };
    genesis.validate()?;
    std::fs::write(dir.join("genesis.json"), serde_json::to_string_pretty(&genesis)?)?;
    let (committee, keys) = deal_files(&a.chain_id, a.nodes);
    for (i, k) in keys.iter().enumerate() {
        let d = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&d)?;
        k.save(&d.join("validator.key"))?;
    }
    committee.save(&dir.join("committee.json"))?;
    Ok(())
}

fn api_addr(base: u16, i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, base + i as u16))
}

fn p2p_addr(base: u16, i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, base + 100 + i as u16))
}

fn spawn_node(a: &TestnetArgs, i: u32) -> anyhow::Result<Child> {
    let d = a.dir.join(format!("node-{i}"));
    let peers =
        (0..a.nodes).map(|j| p2p_addr(a.base_port, j).to_string()).collect::<Vec<_>>().join(",");
    // Every other node's API, to fetch artifacts this one misses.
    let artifact_peers = (0..a.nodes)
        .filter(|j| *j != i)
        .map(|j| format!("http://{}", api_addr(a.base_port, j)))
        .collect::<Vec<_>>()
        .join(",");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("node.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("node")
        .arg("--bft")
        .arg("--data-dir")
        .arg(&d)
        .arg("--genesis")
        .arg(a.dir.join("genesis.json"))
        .arg("--listen")
        .arg(api_addr(a.base_port, i).to_string())
        .arg("--validator-key")
        .arg(d.join("validator.key"))
        .arg("--committee")
        .arg(a.dir.join("committee.json"))
        .arg("--peers")
        .arg(peers)
        .arg("--artifact-peers")
        .arg(artifact_peers)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting a validator process")?;
    Ok(child)
}

/// `flockd testnet`: deals a committee (first run), then runs one validator process per node
/// until Ctrl-C or SIGTERM (which stop the validators too).
pub(crate) async fn testnet(a: TestnetArgs) -> anyhow::Result<()> {
    if u32::from(a.base_port) + 100 + a.nodes > u32::from(u16::MAX) {
        bail!("--base-port too high for {} nodes", a.nodes);
    }
    init(&a)?;
    if a.init_only {
        println!("wrote a {}-validator network to {}", a.nodes, a.dir.display());
        return Ok(());
    }
    let mut children = Vec::new();
    for i in 0..a.nodes {
        match spawn_node(&a, i) {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(e);
            }
        }
    }
    println!("flockd testnet: {} validators in {}", a.nodes, a.dir.display());
    for i in 0..a.nodes {
        println!(
            "  node {i}: http://{}  (p2p {}, log {})",
            api_addr(a.base_port, i),
            p2p_addr(a.base_port, i),
            a.dir.join(format!("node-{i}")).join("node.log").display()
        );
    }
    println!(
        "funded dev accounts: testnet-0 .. testnet-7 (keystore in {}); Ctrl-C stops the network",
        a.dir.display()
    );
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let signal = flock_node::server::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = check.tick() => {
                for (i, c) in children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = c.try_wait() {
                        eprintln!("node {i} exited ({status}); see its log");
                    }
                }
                if children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                    bail!("every validator exited");
                }
            }
        }
    }
    stop(&mut children);
    Ok(())
}

/// SIGTERM to every child, then SIGKILL to those still running after 5 s.
fn stop(children: &mut [Child]) {
    for c in children.iter() {
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    }
    for _ in 0..50 {
        if children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
