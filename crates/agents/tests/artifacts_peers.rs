//! Artifacts across machines, from an agent's side: a download from any of several nodes.

mod common;

use flock_agents::{AgentError, Artifacts};
use flock_primitives::Hash;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_from_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keys("art", 1);
    let a = common::start_node(&dir.path().join("a"), "art-a", &keys, 10, 50, 1 << 20).await;
    let b = common::start_node(&dir.path().join("b"), "art-b", &keys, 10, 50, 1 << 20).await;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let h = Artifacts::new(&b.url(), &dir.path().join("up")).upload(bytes.clone()).await.unwrap();

    // A misses it (and has no peers): the client moves on to B.
    let art = Artifacts::new(&a.url(), &dir.path().join("cache"));
    assert!(matches!(art.download(&h).await, Err(AgentError::Missing(_))));
    let got = art.download_from_any(&[a.url(), b.url()], &h).await.unwrap();
    assert_eq!(got, bytes);
    // Nobody has this one.
    let none = Hash::of(b"no node has this");
    assert!(matches!(
        art.download_from_any(&[a.url(), b.url()], &none).await,
        Err(AgentError::Missing(_))
    ));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
