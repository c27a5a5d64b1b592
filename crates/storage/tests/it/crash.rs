//! Crash safety: a writer killed at arbitrary points leaves only whole blocks behind.
//!
//! The parent test runs this test binary again as a child (the ignored `crash_child_writer`
//! test), lets it commit blocks with fsync, and SIGKILLs it in the middle of a later commit.
//! This covers process crashes; power loss is redb's commit protocol's job (checksummed,
//! double-buffered commit slots) and cannot be simulated here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use flock_primitives::Height;
use flock_storage::{MemStore, RedbStore, StateChange, Store};

use crate::util::{commit, tempdir};

const DIR_VAR: &str = "FLOCK_STORAGE_CRASH_DIR";

/// Block `h`: 30 changes with 1 KiB values, so a commit is long enough to be interrupted.
fn changes_for(h: u64) -> Vec<StateChange> {
    (0..30u64)
        .map(|i| {
            let key = format!("key{:03}", (h * 7 + i * 13) % 400).into_bytes();
            if (h + i) % 9 == 0 {
                (key, None)
            } else {
                (key, Some(vec![(h % 251) as u8; 1024]))
            }
        })
        .collect()
}

#[test]
#[ignore = "child process of killed_writer_leaves_only_whole_blocks"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else { return };
    let mut store = RedbStore::open(Path::new(&dir).join("db.redb")).unwrap();
    let mut h = store.latest().unwrap().map_or(0, |info| info.height.0 + 1);
    loop {
        commit(&mut store, h, &changes_for(h));
        println!("committed {h}");
        h += 1;
    }
}

#[test]
fn killed_writer_leaves_only_whole_blocks() {
    let dir = tempdir();
    let exe = std::env::current_exe().unwrap();
    let mut previous = None;
    // Each round lets the child commit a few blocks, measures how long one commit takes, and
    // kills it at a different fraction of the next commit, so the kills land all over it.
    const ROUNDS: u32 = 12;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash::crash_child_writer", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let blocks = 4 + round % 3;
        let mut seen = 0;
        let mut first_seen = None;
        for line in BufReader::new(stdout).lines() {
            if line.unwrap().starts_with("committed ") {
                seen += 1;
                first_seen.get_or_insert_with(Instant::now);
                if seen == blocks {
                    break;
                }
            }
        }
        assert_eq!(seen, blocks, "round {round}: child stopped early");
        let per_block = first_seen.unwrap().elapsed() / (blocks - 1);
        std::thread::sleep(per_block * round / (ROUNDS - 2));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = RedbStore::open(dir.path().join("db.redb")).unwrap();
        let latest = store.latest().unwrap().expect("the child committed blocks");
        assert!(Some(latest.height) > previous, "round {round}: no progress");
        previous = Some(latest.height);

        // Replaying the same blocks in memory must give exactly what survived on disk.
        let mut mem = MemStore::new();
        for h in 0..=latest.height.0 {
            let root = commit(&mut mem, h, &changes_for(h));
            assert_eq!(store.state_root(Height(h)).unwrap(), Some(root), "round {round} h{h}");
            assert!(store.block(Height(h)).unwrap().is_some());
        }
        assert_eq!(mem.latest().unwrap(), Some(latest), "round {round}");
        assert_eq!(store.state_entries().unwrap(), mem.state_entries().unwrap());
        assert_eq!(store.block(latest.height.next()).unwrap(), None, "round {round}");
        assert_eq!(store.state_root(latest.height.next()).unwrap(), None, "round {round}");
        let proof = store.prove(b"key013").unwrap();
        proof.verify(&latest.state_root, b"key013").unwrap();
    }
}
