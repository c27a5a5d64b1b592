//! Four `flockd node --bft` processes on loopback (files from `flockd testnet --init-only`):
//! transactions sent to different nodes all land on every node; a validator killed with
//! SIGKILL does not stop the other three; restarted, it catches up to the same chain.
#![cfg(feature = "bft")]
#![allow(missing_docs, clippy::disallowed_methods)]

use flock_ledger::{Genesis, SignedTx, Transaction, TxKind};
use flock_primitives::{Amount, Hash, Keypair};
use serde_json::Value;
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const N: usize = 4;
/// Blocks per epoch in the kill-and-restart test.
const EPOCH: u64 = 20;

fn flockd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flockd"))
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

struct Net {
    dir: PathBuf,
    api: Vec<u16>,
    p2p: Vec<u16>,
    procs: Vec<Option<Child>>,
}

impl Net {
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.api[i])
    }

    fn start(&mut self, i: usize) {
        let d = self.dir.join(format!("node-{i}"));
        let peers = self.p2p.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(d.join("node.log")).unwrap();
        let child = flockd()
            .arg("node")
            .arg("--bft")
            .arg("--data-dir")
            .arg(&d)
            .arg("--genesis")
            .arg(self.dir.join("genesis.json"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api[i]))
            .arg("--validator-key")
            .arg(d.join("validator.key"))
            .arg("--committee")
            .arg(self.dir.join("committee.json"))
            .arg("--peers")
            .arg(&peers)
            .env("FLOCK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn flockd");
        self.procs[i] = Some(child);
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill9(i);
        }
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

fn get(c: &reqwest::blocking::Client, url: &str) -> Option<Value> {
    let r = c.get(url).send().ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().ok()
}

fn height(c: &reqwest::blocking::Client, url: &str) -> Option<u64> {
    get(c, &format!("{url}/v1/status"))?["height"].as_u64()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn submit(c: &reqwest::blocking::Client, url: &str, tx: &SignedTx) -> Hash {
    let r = c
        .post(format!("{url}/v1/txs"))
        .header("content-type", "application/octet-stream")
        .body(tx.encode())
        .send()
        .unwrap();
    let status = r.status();
    assert!(status.is_success(), "submit to {url}: {status} {}", r.text().unwrap_or_default());
    tx.hash()
}

fn committed(c: &reqwest::blocking::Client, url: &str, h: &Hash) -> bool {
    get(c, &format!("{url}/v1/txs/{h}")).is_some_and(|v| v["status"] == "committed")
}

/// Blocks 1..=h are identical on these nodes (so are the state roots: each header carries its
/// parent's).
fn assert_same_chain(c: &reqwest::blocking::Client, net: &Net, nodes: &[usize], h: u64) {
    for height in 1..=h {
        let blocks: Vec<Value> = nodes
            .iter()
            .map(|&i| {
                let url = format!("{}/v1/blocks/{height}", net.url(i));
                let r = c.get(&url).send().unwrap_or_else(|e| panic!("{url}: {e}"));
                let status = r.status();
                let body = r.text().unwrap_or_default();
                assert!(status.is_success(), "{url}: {status} {body}");
                serde_json::from_str(&body).unwrap()
            })
            .collect();
        for (k, b) in blocks.iter().enumerate() {
            assert_eq!(b, &blocks[0], "node {} differs at height {height}", nodes[k]);
        }
    }
}

fn transfers(chain_id: &str, from: &[Keypair], nonce: u64) -> Vec<SignedTx> {
    from.iter()
        .enumerate()
        .map(|(i, k)| {
            let to = from[(i + 1) % from.len()].address();
            Transaction {
                chain_id: chain_id.into(),
                signer: k.public(),
                nonce,
                kind: TxKind::Transfer { to, amount: Amount::flock(1) },
            }
            .sign(k)
        })
        .collect()
}

fn init(dir: &Path, epoch_length: Option<u64>) -> Genesis {
    let mut cmd = flockd();
    cmd.args(["testnet", "--nodes", "4", "--init-only", "--dir"]).arg(dir);
    if let Some(l) = epoch_length {
        cmd.arg("--epoch-length").arg(l.to_string());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Genesis::from_json(&std::fs::read_to_string(dir.join("genesis.json")).unwrap()).unwrap()
}

/// A fresh four-validator network in `tmp` (files from `flockd testnet --init-only`), started,
/// once every node has finalized two blocks.
fn start_net(tmp: &Path, epoch_length: Option<u64>) -> (Net, Genesis) {
    let dir = tmp.join("net");
    let genesis = init(&dir, epoch_length);
    let ports = free_ports(2 * N);
    let mut net = Net {
        dir,
        api: ports[..N].to_vec(),
        p2p: ports[N..].to_vec(),
        procs: (0..N).map(|_| None).collect(),
    };
    for i in 0..N {
        net.start(i);
    }
    let c = http();
    wait_until("all four finalize blocks", 60, || {
        (0..N).all(|i| height(&c, &net.url(i)).is_some_and(|h| h >= 2))
    });
    (net, genesis)
}

#[test]
fn four_processes_finalize_survive_a_kill_and_catch_up() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    // Short epochs: the committee's threshold key is re-dealt every 20 blocks (about 2 s), so
    // the run below crosses many epoch boundaries, one of them while node 3 is down.
    let (mut net, genesis) = start_net(tmp.path(), Some(EPOCH));
    let c = http();
    eprintln!("4 validators finalizing after {:?}", t0.elapsed());

    // Each validator bonds network stake and registers its p2p endpoint, so every epoch's
    // resharing round deals the four of them new shares of the group key.
    let identities: Vec<Keypair> = (0..N)
        .map(|i| {
            let d = net.dir.join(format!("node-{i}"));
            let committee =
                flock_node::bft::CommitteeFile::load(&net.dir.join("committee.json")).unwrap();
            let key = flock_node::bft::ValidatorKeyFile::load(&d.join("validator.key")).unwrap();
            let (identity, _, _) = key.open(&committee).unwrap();
            flock_node::bft::reporter_keypair(&identity).unwrap()
        })
        .collect();
    let mut bonds = Vec::new();
    for (i, id) in identities.iter().enumerate() {
        let stake = TxKind::Stake {
            target: flock_ledger::StakeTarget::NETWORK,
            amount: Amount::flock(10_000),
        };
        let register = TxKind::ConsensusRegister { endpoint: format!("127.0.0.1:{}", net.p2p[i]) };
        for (nonce, kind) in [stake, register].into_iter().enumerate() {
            let tx = Transaction {
                chain_id: genesis.chain_id.clone(),
                signer: id.public(),
                nonce: nonce as u64,
                kind,
            }
            .sign(id);
            bonds.push(submit(&c, &net.url(i), &tx));
        }
    }
    wait_until("the validators' stakes and endpoints land", 60, || {
        bonds.iter().all(|h| committed(&c, &net.url(0), h))
    });
    // Two boundaries later a round has run with the four as dealers.
    wait_until("a resharing round with four dealers", 60, || {
        get(&c, &format!("{}/v1/validators", net.url(0))).is_some_and(|v| {
            v["resharing"].as_array().is_some_and(|rounds| {
                rounds.iter().any(|r| r["dealers"].as_array().is_some_and(|d| d.len() == N))
            })
        })
    });
    eprintln!("stakes and endpoints landed; a resharing round had 4 dealers ({:?})", t0.elapsed());

    // Transactions sent to different nodes all land, on every node.
    let keys: Vec<Keypair> = (0..8).map(|i| Keypair::dev(&format!("testnet-{i}"))).collect();
    let mut hashes = Vec::new();
    for round in 0..2 {
        for (j, tx) in transfers(&genesis.chain_id, &keys, round).iter().enumerate() {
            // Sender j's transactions always go to the same node (nonce order in its mempool).
            hashes.push(submit(&c, &net.url(j % N), tx));
        }
        // The second round only after the first landed (a node's mempool holds a sender's
        // next nonce only; other nodes may propose first).
        wait_until("the round's transfers land everywhere", 60, || {
            (0..N).all(|i| hashes.iter().all(|h| committed(&c, &net.url(i), h)))
        });
    }
    let h = (0..N).map(|i| height(&c, &net.url(i)).unwrap()).min().unwrap();
    assert_same_chain(&c, &net, &[0, 1, 2, 3], h);
    eprintln!(
        "16 transfers landed on all 4 nodes; chains equal to height {h} ({:?})",
        t0.elapsed()
    );

    // kill -9 one validator: the other three keep finalizing and take transactions.
    net.kill9(3);
    let at_kill = (0..3).map(|i| height(&c, &net.url(i)).unwrap()).max().unwrap();
    let more: Vec<Hash> = transfers(&genesis.chain_id, &keys, 2)
        .iter()
        .enumerate()
        .map(|(j, tx)| submit(&c, &net.url(j % 3), tx))
        .collect();
    // Down across an epoch boundary: the others pass the next one before it restarts.
    let past = ((at_kill / EPOCH + 1) * EPOCH + 2).max(at_kill + 5);
    wait_until("three validators keep finalizing", 60, || {
        (0..3).all(|i| {
            height(&c, &net.url(i)).is_some_and(|h| h >= past)
                && more.iter().all(|h| committed(&c, &net.url(i), h))
        })
    });
    let h3 = (0..3).map(|i| height(&c, &net.url(i)).unwrap()).min().unwrap();
    assert_same_chain(&c, &net, &[0, 1, 2], h3);
    eprintln!(
        "node 3 killed at height {at_kill}; the rest reached {h3} with 8 more transfers ({:?})",
        t0.elapsed()
    );

    // Restarted from its store, it catches up to the others' chain.
    net.start(3);
    wait_until("the restarted validator catches up", 90, || {
        height(&c, &net.url(3)).is_some_and(|h| h >= h3)
    });
    assert_same_chain(&c, &net, &[0, 1, 2, 3], h3);
    assert!(more.iter().all(|h| committed(&c, &net.url(3), h)));
    // And it takes part again: the chain goes on with all four.
    let target = h3 + 8;
    wait_until("all four finalize after the restart", 60, || {
        (0..N).all(|i| height(&c, &net.url(i)).is_some_and(|h| h >= target))
    });
    assert_same_chain(&c, &net, &[0, 1, 2, 3], target);
    eprintln!("node 3 restarted and caught up to {h3}, all four at {target} ({:?})", t0.elapsed());
    // And it still signs and leads: after the restart it proposes blocks again (with the
    // share it kept, or the one the next resharing dealt it).
    let proposer = |h: u64| {
        get(&c, &format!("{}/v1/blocks/{h}", net.url(0))).map(|b| b["header"]["proposer"].clone())
    };
    let me = serde_json::to_value(identities[3].address()).unwrap();
    let next = std::cell::Cell::new(h3 + 1);
    wait_until("the restarted validator leads a block", 60, || {
        let tip = height(&c, &net.url(0)).unwrap_or(0);
        let from = next.replace(tip + 1);
        (from..=tip).any(|h| proposer(h).is_some_and(|p| p == me))
    });
    let epochs = height(&c, &net.url(0)).unwrap() / EPOCH;
    eprintln!("node 3 leads again; {epochs} epochs so far ({:?})", t0.elapsed());
}

/// Submits `per_sender` transfers from each key (sender j to `urls[j % len]`, one thread per
/// sender) and waits until all are committed on `urls[0]`; returns the seconds taken.
fn load(
    chain_id: &str,
    urls: &[String],
    keys: &[Keypair],
    first_nonce: u64,
    per_sender: u64,
) -> f64 {
    let txs: Vec<Vec<SignedTx>> =
        (0..per_sender).map(|k| transfers(chain_id, keys, first_nonce + k)).collect();
    let by_sender: Vec<Vec<SignedTx>> =
        (0..keys.len()).map(|j| txs.iter().map(|round| round[j].clone()).collect()).collect();
    let last: Vec<Hash> = by_sender.iter().map(|t| t.last().unwrap().hash()).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for (j, txs) in by_sender.iter().enumerate() {
            let url = urls[j % urls.len()].clone();
            s.spawn(move || {
                let c = http();
                for tx in txs {
                    submit(&c, &url, tx);
                }
            });
        }
    });
    let c = http();
    wait_until("the load lands", 300, || last.iter().all(|h| committed(&c, &urls[0], h)));
    t.elapsed().as_secs_f64()
}

/// Finality latency: one transfer at a time, submit to commit (seen by the node it was sent to).
fn latencies(chain_id: &str, url: &str, key: &Keypair, first_nonce: u64, n: u64) -> Vec<f64> {
    let c = http();
    let mut out = Vec::new();
    for k in 0..n {
        let tx = transfers(chain_id, std::slice::from_ref(key), first_nonce + k).remove(0);
        let t = Instant::now();
        let h = submit(&c, url, &tx);
        while !committed(&c, url, &h) {
            std::thread::sleep(Duration::from_millis(2));
        }
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Benchmark (ignored by default): finalized transfers per second and finality latency, four
/// BFT validator processes on loopback next to the solo sequencer (100 ms blocks) on the same
/// machine. Both fsync every block. Run:
/// `cargo test -p flockd --features bft --test bft_testnet -- --ignored --nocapture bench`
#[test]
#[ignore = "benchmark"]
fn bench_bft_vs_solo() {
    let per_sender: u64 =
        std::env::var("FLOCK_BENCH_TXS").ok().and_then(|v| v.parse().ok()).unwrap_or(250);
    let lat_n = 30;
    let keys: Vec<Keypair> = (0..8).map(|i| Keypair::dev(&format!("testnet-{i}"))).collect();
    let total = per_sender * keys.len() as u64;
    let mut rows = Vec::new();

    // Four BFT validators.
    {
        let tmp = tempfile::tempdir().unwrap();
        let (net, genesis) = start_net(tmp.path(), None);
        let c = http();
        let urls: Vec<String> = (0..N).map(|i| net.url(i)).collect();
        let h0 = height(&c, &urls[0]).unwrap();
        let secs = load(&genesis.chain_id, &urls, &keys, 0, per_sender);
        let blocks = height(&c, &urls[0]).unwrap() - h0;
        let lat = latencies(&genesis.chain_id, &urls[0], &keys[0], per_sender, lat_n);
        rows.push(("bft, 4 validators (loopback processes)", secs, blocks, lat));
    }
    // The solo sequencer.
    {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let seq = flock_node::SequencerKey::from_seed([42; 32]);
        seq.save(&dir.join("sequencer.key")).unwrap();
        let genesis = Genesis {
            chain_id: "flock-bench".into(),
            genesis_time_ms: 1_700_000_000_000,
            params: flock_ledger::Params::default(),
            allocations: keys
                .iter()
                .map(|k| flock_ledger::Allocation {
                    address: k.address(),
                    amount: Amount::flock(1_000_000),
                })
                .collect(),
            targets: vec![],
            sequencer: Some(seq.genesis_entry()),
        };
        std::fs::write(dir.join("genesis.json"), serde_json::to_string(&genesis).unwrap()).unwrap();
        let port = free_ports(1)[0];
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let mut child = flockd()
            .args(["node", "--block-interval-ms", "100", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .arg("--genesis")
            .arg(dir.join("genesis.json"))
            .env("FLOCK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let c = http();
        wait_until("solo node up", 60, || height(&c, &url).is_some());
        let h0 = height(&c, &url).unwrap();
        let secs = load(&genesis.chain_id, std::slice::from_ref(&url), &keys, 0, per_sender);
        let blocks = height(&c, &url).unwrap() - h0;
        let lat = latencies(&genesis.chain_id, &url, &keys[0], per_sender, lat_n);
        let _ = child.kill();
        let _ = child.wait();
        rows.push(("solo sequencer, 100 ms blocks", secs, blocks, lat));
    }

    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("\n{total} transfers from 8 senders over HTTP ({profile} build), then {lat_n} single transfers for latency");
    println!(
        "{:<40} {:>10} {:>8} {:>8} {:>14} {:>14} {:>12}",
        "mode", "tx/s", "secs", "blocks", "latency p50 ms", "latency p90 ms", "max ms"
    );
    for (mode, secs, blocks, lat) in rows {
        let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "{mode:<40} {:>10.0} {secs:>8.2} {blocks:>8} {:>14.1} {:>14.1} {:>12.1}",
            total as f64 / secs,
            p(0.5),
            p(0.9),
            lat[lat.len() - 1]
        );
    }
}

/// A base port with BASE..BASE+n and BASE+100..BASE+100+n free (`flockd testnet`'s layout).
fn free_base_port(n: u16) -> u16 {
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let seed = std::process::id() as u16;
    (0..2_000u16)
        .map(|k| (20_000 + (u32::from(seed) * 7 + u32::from(k) * 211) % 40_000) as u16)
        .find(|&b| (0..n).all(|i| free(b + i) && free(b + 100 + i)))
        .expect("free ports")
}

/// The devnet's AI Arena round (real LoRA training and bits-per-byte scoring, quick variant)
/// on a 4-validator `flockd testnet`: agents talk to different nodes, artifacts cross nodes,
/// and every node ends with the same round result and the same blocks.
#[test]
fn arena_round_on_four_processes_same_result_everywhere() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(N as u16);
    let mut child = flockd()
        .args(["testnet", "--nodes", "4", "--arena", "--quick", "--exit-after-arena"])
        .arg("--dir")
        .arg(&dir)
        .arg("--base-port")
        .arg(base.to_string())
        .env("FLOCK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on threads (a full pipe would stall the child).
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("flockd testnet --arena did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "flockd testnet --arena failed:\n{out}\n{err}");
    assert!(out.contains("network stake: 4 validators bonded"), "{out}");
    assert!(out.contains("same arena result on all 4 nodes"), "{out}");
    assert_eq!(out.matches("  [ok] ").count(), 6, "{out}");
    assert!(!out.contains("[FAILED]"), "{out}");
    // Artifacts crossed nodes: the base model the creator uploaded to node 0 was fetched by
    // the trainers on nodes 1-3 from their own node, which got it from a peer; so some files
    // are in every node's store.
    let stored = |i: usize| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir.join(format!("node-{i}")).join("artifacts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    };
    let everywhere =
        (1..N).fold(stored(0), |acc, i| acc.intersection(&stored(i)).cloned().collect());
    assert!(!everywhere.is_empty(), "no artifact reached every node");
    eprintln!("arena on 4 processes: {:?}\n{out}", t0.elapsed());
}
