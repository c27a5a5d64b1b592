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
    (0..TESTNET_ACCOUNTS).map(|i| Keypair::dev(&format!("testnet-{i}"))).collect()
}

const TESTNET_ACCOUNTS: usize = 12;
/// Network stake each testnet validator bonds from its identity account once the network runs.
const VALIDATOR_STAKE: u64 = 10_000;

/// Validator `i`'s identity key as a flock account (it holds the validator's network stake).
fn validator_account(dir: &std::path::Path, i: u32) -> anyhow::Result<Keypair> {
    let committee = CommitteeFile::load(&dir.join("committee.json"))?;
    let key = ValidatorKeyFile::load(&dir.join(format!("node-{i}")).join("validator.key"))?;
    let (identity, _, _) = key.open(&committee)?;
    flock_node::bft::reporter_keypair(&identity)
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
        params: Params {
            epoch_length: a.epoch_length.unwrap_or(Params::default().epoch_length),
            ..Params::default()
        },
        allocations,
        targets: vec![],
        sequencer: None,
    };
    let (committee, keys) = deal_files(&a.chain_id, a.nodes);
    // Each validator's identity account is funded to bond its network stake.
    let mut genesis = genesis;
    for (i, k) in keys.iter().enumerate() {
        let d = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&d)?;
        k.save(&d.join("validator.key"))?;
        let (identity, _, _) = k.open(&committee)?;
        let address = flock_node::bft::reporter_keypair(&identity)?.address();
        let amount = Amount::flock(2 * VALIDATOR_STAKE);
        genesis.allocations.push(Allocation { address, amount });
    }
    genesis.validate()?;
    std::fs::write(dir.join("genesis.json"), serde_json::to_string_pretty(&genesis)?)?;
    // Last: its presence marks a complete network directory.
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
        "funded dev accounts: testnet-0 .. testnet-{} (keystore in {}); Ctrl-C stops the network",
        TESTNET_ACCOUNTS - 1,
        a.dir.display()
    );
    let urls: Vec<String> =
        (0..a.nodes).map(|i| format!("http://{}", api_addr(a.base_port, i))).collect();
    let setup = async {
        wait_for_nodes(&urls).await?;
        stake_validators(&a, &urls).await?;
        if a.arena {
            arena_on_every_node(&a, &urls).await?;
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = setup => r,
        _ = flock_node::server::shutdown_signal() => {
            stop(&mut children);
            return Ok(());
        }
    };
    if let Err(e) = &result {
        eprintln!("flockd testnet: {e:#}");
    }
    if a.exit_after_arena || result.is_err() {
        stop(&mut children);
        return result;
    }
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

/// Waits until every node's API answers and the chain has finalized a block.
async fn wait_for_nodes(urls: &[String]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for url in urls {
        let client = flock_node::Client::new(url);
        loop {
            let h = client.get("/v1/status").await.ok().and_then(|v| v["height"].as_u64());
            if h.is_some_and(|h| h >= 1) {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("{url} did not finalize a block within 120 s (see its node.log)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Each validator bonds network stake from its identity account (through its own node), so
/// the ledger's staked validator set is the committee. Skipped where it already has stake.
async fn stake_validators(a: &TestnetArgs, urls: &[String]) -> anyhow::Result<()> {
    use flock_ledger::{StakeTarget, TxKind};
    let mut bonded = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let key = validator_account(&a.dir, i as u32)?;
        let client = flock_node::Client::new(url);
        let account = client.get(&format!("/v1/accounts/{}", key.address())).await?;
        let staked = account["stakes"].as_array().is_some_and(|s| !s.is_empty());
        let balance = account["balance"]
            .as_str()
            .and_then(|b| Amount::from_base_str(b).ok())
            .unwrap_or_default();
        if staked || balance < Amount::flock(VALIDATOR_STAKE) {
            continue;
        }
        let amount = Amount::flock(VALIDATOR_STAKE);
        let hash =
            client.send(&key, TxKind::Stake { target: StakeTarget::NETWORK, amount }).await?;
        let v = client.wait_tx(hash, Duration::from_secs(60)).await?;
        if v["receipt"]["status"] == "failed" {
            bail!("validator {i} could not bond network stake: {}", v["receipt"]["message"]);
        }
        bonded.push(hash);
        // Its consensus endpoint: with it, the staked validator stays in the committee when
        // the committee is re-dealt at an epoch boundary.
        let endpoint = p2p_addr(a.base_port, i as u32).to_string();
        let hash = client.send(&key, TxKind::ConsensusRegister { endpoint }).await?;
        let v = client.wait_tx(hash, Duration::from_secs(60)).await?;
        if v["receipt"]["status"] == "failed" {
            bail!("validator {i} could not register its endpoint: {}", v["receipt"]["message"]);
        }
        bonded.push(hash);
    }
    // Each stake was seen committed by the node it went through; node 0, which reports the
    // set, may be a block behind: wait until it has every one of them.
    let first = flock_node::Client::new(&urls[0]);
    for hash in bonded {
        first.wait_tx(hash, Duration::from_secs(60)).await?;
    }
    let v = first.get("/v1/validators").await?;
    let staked = v["staked_now"].as_array().map_or(0, Vec::len);
    println!("network stake: {staked} validators bonded {VALIDATOR_STAKE} FLOCK each (GET /v1/validators)");
    Ok(())
}

/// The devnet's AI Arena round with its agents spread over the nodes, then the round's result
/// and a common block read from every node: they must be identical.
async fn arena_on_every_node(a: &TestnetArgs, urls: &[String]) -> anyhow::Result<()> {
    let keys = testnet_accounts();
    let dir = a.dir.join("arena");
    std::fs::create_dir_all(&dir)?;
    println!(
        "\nAI Arena on the {}-node network: agent i talks to node i mod {}",
        urls.len(),
        urls.len()
    );
    // BFT blocks come about every 50 ms on loopback; phases are budgets in blocks.
    let (task, _) = super::devnet::arena(urls, keys, &dir, 40, a.quick, None).await?;
    let path = format!("/v1/arena/tasks/{task}/rounds/0");
    let mut results = Vec::new();
    for url in urls {
        results.push(flock_node::Client::new(url).get(&path).await?["result"].clone());
    }
    if results.iter().any(|r| r.is_null() || *r != results[0]) {
        bail!("the nodes disagree on the arena result: {results:#?}");
    }
    // The same block (and so the same state root after its parent) on every node.
    let mut height = u64::MAX;
    for url in urls {
        let h = flock_node::Client::new(url).get("/v1/status").await?["height"].as_u64();
        height = height.min(h.unwrap_or(0));
    }
    let mut blocks = Vec::new();
    for url in urls {
        blocks.push(flock_node::Client::new(url).get(&format!("/v1/blocks/{height}")).await?);
    }
    if blocks.iter().any(|b| *b != blocks[0]) {
        bail!("the nodes disagree on block {height}");
    }
    let winner = results[0]["ranking"][0]["node"].as_str().unwrap_or("?").to_owned();
    println!(
        "same arena result on all {} nodes (task {task}, winner {winner}); block {height} identical everywhere (state root before it {})",
        urls.len(),
        blocks[0]["header"]["parent_state_root"].as_str().unwrap_or("?")
    );
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
