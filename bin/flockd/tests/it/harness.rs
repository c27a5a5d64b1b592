use flock_ledger::{Allocation, Genesis, Params, Transaction, TxKind};
use flock_node::SequencerKey;
use flock_primitives::{Amount, Hash, Keypair};
use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub(crate) const CHAIN: &str = "flock-e2e";

pub(crate) fn flockd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flockd"))
}

pub(crate) fn keys(n: usize) -> Vec<Keypair> {
    (0..n).map(|i| Keypair::dev(&format!("e2e-{i}"))).collect()
}

/// Writes a genesis and a sequencer key into `dir`; returns the genesis path.
pub(crate) fn setup(dir: &Path, accounts: &[Keypair]) -> PathBuf {
    let seq = SequencerKey::from_seed([42; 32]);
    seq.save(&dir.join("sequencer.key")).unwrap();
    let g = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params {
            epoch_length: 10,
            min_network_stake: Amount::flock(100),
            ..Params::default()
        },
        allocations: accounts
            .iter()
            .map(|k| Allocation { address: k.address(), amount: Amount::flock(1_000_000) })
            .collect(),
        targets: vec![],
        sequencer: Some(seq.genesis_entry()),
    };
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(&g).unwrap()).unwrap();
    path
}

/// A `flockd node` child process.
pub(crate) struct NodeProc {
    pub child: Child,
    pub url: String,
}

impl NodeProc {
    pub(crate) fn start(dir: &Path, genesis: &Path, interval_ms: u64) -> Self {
        let mut child = flockd()
            .args([
                "node",
                "--listen",
                "127.0.0.1:0",
                "--block-interval-ms",
                &interval_ms.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir)
            .arg("--genesis")
            .arg(genesis)
            .env("FLOCK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn flockd");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self { child, url }
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "flockd node exited with {status}");
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

pub(crate) fn get(c: &reqwest::blocking::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

pub(crate) fn sign(k: &Keypair, nonce: u64, kind: TxKind) -> flock_ledger::SignedTx {
    Transaction { chain_id: CHAIN.into(), signer: k.public(), nonce, kind }.sign(k)
}

/// Posts a transaction; returns (status, body).
pub(crate) fn post(
    c: &reqwest::blocking::Client,
    url: &str,
    tx: &flock_ledger::SignedTx,
) -> reqwest::Result<(u16, Value)> {
    let r = c
        .post(format!("{url}/v1/txs"))
        .header("content-type", "application/octet-stream")
        .body(tx.encode())
        .send()?;
    let s = r.status().as_u16();
    Ok((s, r.json().unwrap_or(Value::Null)))
}

/// Waits for a transaction to commit; returns its height.
pub(crate) fn wait_committed(c: &reqwest::blocking::Client, url: &str, h: &Hash) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get(c, &format!("{url}/v1/txs/{h}"));
        if v["status"] == "committed" {
            return v["height"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "tx {h} not committed");
        std::thread::sleep(Duration::from_millis(20));
    }
}
