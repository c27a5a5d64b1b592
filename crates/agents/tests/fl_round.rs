//! An FL Alliance task end to end over HTTP: six hospitals with simulated glucose patients (one
//! poisoning its updates), ten rounds, real MLP training and deterministic aggregation.

mod common;

use flock_agents::{
    alliance::{MemberBehaviour, MemberRound, DP_DELTA, SECAGG_SCALE_BITS},
    fetch::Artifacts,
    fl_scenario::{print_alliance, run_alliance_scenario, AllianceOutcome, AllianceScenario},
};
use flock_ledger::alliance::{AlliancePhases, Privacy};
use flock_ml_core::{aggregate::clip_l2, secagg, ArtifactLimits, Update};
use flock_primitives::{Hash, Ppm};
use serde_json::Value;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glucose_alliance_contains_the_poisoner() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keys("fl", 7);
    let node = common::start_node(dir.path(), "flock-fl", &keys, 50, 30, 16 << 20).await;
    let s = AllianceScenario {
        url: node.url(),
        keys,
        rounds: 10,
        patients: 2,
        days: 2,
        phases: AlliancePhases { join: 20, propose: 60, vote_commit: 60, vote_reveal: 30 },
        work_dir: dir.path().join("agents"),
        privacy: Privacy::Plaintext,
        proposer_ratio: Ppm::percent(50).unwrap(),
        last: MemberBehaviour::Poison,
    };
    let o = tokio::time::timeout(Duration::from_secs(300), run_alliance_scenario(s))
        .await
        .expect("in time")
        .unwrap();
    let table = print_alliance(&o);
    println!("{table}");
    for (c, ok) in &o.checks {
        assert!(ok, "{c}\n{table}");
    }
    assert!(o.federated_rmse < o.initial_rmse, "{table}");
    let sup = flock_node::Client::new(&node.url()).get("/v1/supply").await.unwrap();
    assert_eq!(sup["conserved"], true);
    node.shutdown().await.unwrap();
}

/// What a run left for the checks: the outcome, each round's public view, the global model
/// each round started from, and every posted update artifact as voters downloaded it.
struct PrivateRun {
    o: AllianceOutcome,
    views: Vec<Value>,
    globals: Vec<Update>,
    posted: BTreeMap<Hash, Vec<u8>>,
}

/// Runs a shorter alliance in `privacy` mode.
async fn private_run(
    label: &str,
    privacy: Privacy,
    rounds: u32,
    ratio: u32,
    last: MemberBehaviour,
) -> PrivateRun {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keys(label, 7);
    let node = common::start_node(dir.path(), label, &keys, 50, 30, 16 << 20).await;
    let s = AllianceScenario {
        url: node.url(),
        keys,
        rounds,
        patients: 2,
        days: 2,
        phases: AlliancePhases { join: 20, propose: 60, vote_commit: 60, vote_reveal: 30 },
        work_dir: dir.path().join("agents"),
        privacy,
        proposer_ratio: Ppm::percent(ratio).unwrap(),
        last,
    };
    let o = tokio::time::timeout(Duration::from_secs(300), run_alliance_scenario(s))
        .await
        .expect("in time")
        .unwrap();
    let table = print_alliance(&o);
    println!("{table}");
    for (c, ok) in &o.checks {
        assert!(ok, "{c}\n{table}");
    }
    let client = flock_node::Client::new(&node.url());
    let sup = client.get("/v1/supply").await.unwrap();
    assert_eq!(sup["conserved"], true);
    let art = Artifacts::new(&node.url(), &dir.path().join("observer"));
    let detail = client.get(&format!("/v1/alliance/tasks/{}", o.task)).await.unwrap();
    let mut current: Hash = detail["spec"]["model"].as_str().unwrap().parse().unwrap();
    let layout = o
        .reports
        .iter()
        .flat_map(|(_, m)| m)
        .find_map(|m| m.local_update.clone())
        .expect("some hospital proposed")
        .layout()
        .clone();
    let limits = ArtifactLimits::for_params(layout.numel() as u64);
    let (mut views, mut globals, mut posted) = (Vec::new(), Vec::new(), BTreeMap::new());
    for r in 0..rounds {
        let g = art.download(&current).await.unwrap();
        globals.push(Update::from_safetensors(&g, &layout, &limits).unwrap());
        let v = client.get(&format!("/v1/alliance/tasks/{}/rounds/{r}", o.task)).await.unwrap();
        for p in v["proposals"].as_array().unwrap() {
            let h: Hash = p["update"].as_str().unwrap().parse().unwrap();
            posted.insert(h, art.download(&h).await.unwrap());
        }
        if let Some(h) = v["outcome"]["adopted"].as_str() {
            current = h.parse().unwrap();
        }
        views.push(v);
    }
    let g = art.download(&current).await.unwrap();
    globals.push(Update::from_safetensors(&g, &layout, &limits).unwrap());
    node.shutdown().await.unwrap();
    PrivateRun { o, views, globals, posted }
}

/// `(round, posted artifact) → the update the hospital trained` (its own log).
fn local_updates(o: &AllianceOutcome, noised_only: bool) -> BTreeMap<(u32, Hash), Arc<Update>> {
    o.reports
        .iter()
        .flat_map(|(_, rs)| rs.iter())
        .filter(|m| !noised_only || m.epsilon.is_some())
        .filter_map(|m: &MemberRound| Some(((m.round, m.sent?), m.local_update.clone()?)))
        .collect()
}

fn delta(local: &Update, global: &Update) -> Vec<f64> {
    local.values().iter().zip(global.values()).map(|(a, b)| f64::from(*a) - f64::from(*b)).collect()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Secure aggregation in a live alliance: what voters download are uniformly masked vectors
/// that say nothing about any one update, yet each adopted model is the previous one plus the
/// mean of the proposers' real changes within quantization — also in rounds where a drawn
/// proposer dropped out and the survivors revealed its pair seeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_aggregation_hides_updates_and_survives_a_dropout() {
    // ρ = 80%: the dropping hospital is drawn proposer in most rounds.
    let run =
        private_run("fl-secagg", Privacy::SecureAggregation, 4, 80, MemberBehaviour::Dropout).await;
    let locals = local_updates(&run.o, false);
    let (mut dropout_rounds, mut checked) = (0, 0);
    for (r, v) in run.views.iter().enumerate() {
        let global = &run.globals[r];
        let dropped = v["dropped"].as_array().is_some_and(|d| !d.is_empty());
        let mut deltas: Vec<Vec<f64>> = Vec::new();
        for p in v["proposals"].as_array().unwrap() {
            let h: Hash = p["update"].as_str().unwrap().parse().unwrap();
            let d = delta(&locals[&(r as u32, h)], global);
            // What a voter sees of this update: uniform words, uncorrelated with it.
            let words = secagg::decode_masked(&run.posted[&h], d.len()).unwrap();
            let seen: Vec<f64> = words
                .iter()
                .map(|w| f64::from(*w as i32) / f64::from(1u32 << SECAGG_SCALE_BITS))
                .collect();
            let c = correlation(&seen, &d);
            assert!(c.abs() < 0.15, "round {r}: a masked vector correlates {c} with its update");
            let high = words.iter().filter(|w| **w >> 31 == 1).count();
            assert!(high.abs_diff(words.len() / 2) < words.len() / 8, "round {r}: {high} top bits");
            deltas.push(d);
        }
        if v["outcome"]["accepted"] != true {
            continue;
        }
        // The adopted model: the previous one plus the mean change, within quantization.
        let next = &run.globals[r + 1];
        let k = deltas.len() as f64;
        let tol = 1.0 / f64::from(1u32 << SECAGG_SCALE_BITS);
        for (i, (g, x)) in global.values().iter().zip(next.values()).enumerate() {
            let want = f64::from(*g) + deltas.iter().map(|d| d[i]).sum::<f64>() / k;
            assert!(
                (f64::from(*x) - want).abs() <= tol + want.abs() * 1e-6,
                "round {r} coordinate {i}: {x} vs {want} (dropout round: {dropped})"
            );
        }
        checked += 1;
        dropout_rounds += usize::from(dropped);
    }
    assert!(checked >= 2, "at least two accepted rounds checked ({checked})");
    assert!(dropout_rounds >= 1, "an accepted round had a dropped proposer");
}

/// Differential privacy in a live alliance: every posted update is the global model plus the
/// hospital's clipped change plus Gaussian noise of the task's σ, and ε is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_privacy_noises_every_update_and_reports_epsilon() {
    let (clip, z) = (1.0, 0.05);
    let privacy = Privacy::DifferentialPrivacy { clip_micro: 1_000_000, noise_micro: 50_000 };
    let run = private_run("fl-dp", privacy, 3, 50, MemberBehaviour::Poison).await;
    // The honest hospitals' updates (the poisoner posts its raw update, ignoring the rules).
    let locals = local_updates(&run.o, true);
    let want_eps = clip * (2.0 * (1.25 / DP_DELTA).ln()).sqrt() / (z * clip);
    assert!(!run.o.epsilon.is_empty(), "ε is reported");
    for (name, k, e1, total) in &run.o.epsilon {
        assert!((e1 - want_eps).abs() < 1e-6 * want_eps, "{name}: ε {e1} vs {want_eps}");
        assert!((total - e1 * *k as f64).abs() < 1e-6 * total, "{name}: basic composition");
    }
    let mut n = 0;
    for (r, v) in run.views.iter().enumerate() {
        for p in v["proposals"].as_array().unwrap() {
            let h: Hash = p["update"].as_str().unwrap().parse().unwrap();
            let Some(local) = locals.get(&(r as u32, h)) else { continue };
            let global = &run.globals[r];
            let mut d: Vec<f32> =
                local.values().iter().zip(global.values()).map(|(a, b)| a - b).collect();
            clip_l2(&mut d, clip).unwrap();
            let limits = ArtifactLimits::for_params(global.layout().numel() as u64);
            let sent = Update::from_safetensors(&run.posted[&h], global.layout(), &limits).unwrap();
            let noise: Vec<f64> = sent
                .values()
                .iter()
                .zip(global.values())
                .zip(&d)
                .map(|((s, g), c)| f64::from(*s) - f64::from(*g) - f64::from(*c))
                .collect();
            let m = noise.len() as f64;
            let std = (noise.iter().map(|x| x * x).sum::<f64>() / m).sqrt();
            assert!((std / (z * clip) - 1.0).abs() < 0.15, "round {r}: noise std {std}");
            n += 1;
        }
    }
    assert!(n >= 2, "checked {n} noised updates");
}

/// A hospital whose update has another model's shape: every voter leaves it out of the
/// aggregate and reports it, and the ledger slashes it in accepted rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_the_wrong_shape_is_left_out_and_slashed() {
    let run = private_run("fl-shape", Privacy::Plaintext, 4, 80, MemberBehaviour::WrongShape).await;
    let bad = "hospital-W (wrong shape)";
    let mut seen = 0;
    for r in &run.o.rounds {
        if !r.proposers.iter().any(|p| p == bad) || !r.accepted {
            continue;
        }
        seen += 1;
        assert!(r.slashed.iter().any(|(n, _)| n == bad), "round {}: {:?}", r.round, r.slashed);
    }
    // Every voter reported the bad update with a full penalty.
    let layout = run.globals[0].layout();
    let limits = ArtifactLimits::for_params(layout.numel() as u64);
    let mut reported = 0;
    for v in &run.views {
        for p in v["proposals"].as_array().unwrap() {
            let h: Hash = p["update"].as_str().unwrap().parse().unwrap();
            if Update::from_safetensors(&run.posted[&h], layout, &limits).is_ok() {
                continue;
            }
            let i = p["index"].as_u64().unwrap();
            for vote in v["votes"].as_array().unwrap() {
                let pen = vote["vote"]["penalties"].as_array().unwrap();
                assert!(
                    pen.iter().any(|x| x[0].as_u64() == Some(i) && x[1] == 1_000_000),
                    "{vote}"
                );
                reported += 1;
            }
        }
    }
    assert!(seen >= 1 && reported >= 1, "the hospital was drawn proposer in an accepted round");
}
