//! AI Arena on the ledger: a full round with hand-computed payouts, bad input, and a property
//! test that payouts plus the carried remainder equal the budget exactly.

use crate::common::*;
use flock_ledger::{
    arena::{
        self, node_target, score_commitment, submission_commitment, validation_commitment,
        verify_draw, ArenaTaskSpec, Metric, Phase, Phases, Score,
    },
    test_utils::{apply, sign},
    Ledger, Params, Receipt, TxError, TxKind, TxStatus,
};
use flock_primitives::{Amount, Hash, Keypair, Ppm};

const PHASES: Phases = Phases { train: 8, reveal: 2, validate_commit: 2, validate_reveal: 2 };

fn spec(creator: &Keypair, rounds: u32, deposit: Amount) -> ArenaTaskSpec {
    ArenaTaskSpec {
        title: "text2sql".into(),
        base_model: Hash::of(b"base"),
        training_set: Hash::of(b"train"),
        validation_commitments: (0..rounds)
            .map(|r| {
                validation_commitment(
                    &creator.address(),
                    r,
                    &Hash::of(&[b'v', r as u8]),
                    &Hash::of(b"vsalt"),
                )
            })
            .collect(),
        max_params: 1_000_000,
        context_length: 256,
        metric: Metric::Bpb,
        phases: PHASES,
        min_node_stake: flock(10),
        min_validator_stake: flock(10),
        rank_ratio: Ppm::percent(50).unwrap(),
        gamma: Ppm::percent(10).unwrap(),
        delta: Ppm::percent(10).unwrap(),
        validators_per_submission: 3,
        deposit,
    }
}

/// Runs one block with `txs` (signer, kind); returns the receipts, asserting success.
fn block(l: &mut Ledger, txs: Vec<(&Keypair, TxKind)>) -> Vec<Receipt> {
    let signed = txs
        .into_iter()
        .map(|(k, kind)| sign(k, l.state().account(&k.address()).nonce, kind))
        .collect::<Vec<_>>();
    // Nonces of several txs by one signer in a block: re-sign sequentially.
    let mut fixed = Vec::new();
    let mut next: std::collections::BTreeMap<_, u64> = Default::default();
    for t in signed {
        let a = t.tx.sender();
        let n = *next.entry(a).or_insert(t.tx.nonce);
        next.insert(a, n + 1);
        let key = KEYS.with(|ks| ks.borrow().iter().find(|k| k.address() == a).cloned().unwrap());
        fixed.push(sign(&key, n, t.tx.kind));
    }
    let r = apply(l, fixed).unwrap();
    for rc in &r.txs {
        assert_eq!(rc.status, TxStatus::Ok, "{rc:?}");
    }
    assert_conserved(l);
    r.txs
}

thread_local! {
    static KEYS: std::cell::RefCell<Vec<Keypair>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn setup(p: Params) -> (Ledger, Vec<Keypair>) {
    let (l, k) = fresh_with(p);
    KEYS.with(|ks| *ks.borrow_mut() = k.clone());
    (l, k)
}

fn advance_to(l: &mut Ledger, task: u64, want: &str) {
    for _ in 0..100 {
        let t = l.state().arena_task(task).unwrap();
        if t.phase_at(l.height().next()).name() == want {
            return;
        }
        advance(l, 1);
    }
    panic!("phase {want} never came");
}

/// Accounts: 0 creator, 1-4 training nodes, 5 delegator; plus validators from extra keys.
#[test]
fn a_round_settles_with_hand_computed_payouts() {
    // 6 funded accounts from `fresh`; validators need 3 more: fund them from the creator.
    let p = Params { epoch_length: 1_000_000, ..params() };
    let (mut l, mut k) = setup(p);
    let vkeys: Vec<Keypair> = (0..3).map(|i| Keypair::dev(&format!("validator-{i}"))).collect();
    KEYS.with(|ks| ks.borrow_mut().extend(vkeys.clone()));
    k.extend(vkeys);
    let (c, n1, n2, n3, n4, d, v1, v2, v3) =
        (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5], &k[6], &k[7], &k[8]);
    block(
        &mut l,
        vec![
            (c, TxKind::Transfer { to: v1.address(), amount: flock(1_000) }),
            (c, TxKind::Transfer { to: v2.address(), amount: flock(1_000) }),
            (c, TxKind::Transfer { to: v3.address(), amount: flock(1_000) }),
        ],
    );
    let r =
        block(&mut l, vec![(c, TxKind::ArenaCreate { spec: Box::new(spec(c, 1, flock(10_000))) })]);
    assert!(
        matches!(r[0].events[0], flock_ledger::Event::ArenaTaskCreated { task: 1, .. }),
        "{:?}",
        r[0].events
    );
    let task = 1;
    let (nt, vt) = (arena::node_target(task), arena::validator_target(task));
    block(
        &mut l,
        vec![
            (n1, TxKind::Stake { target: nt, amount: flock(100) }),
            (n2, TxKind::Stake { target: nt, amount: flock(100) }),
            (n3, TxKind::Stake { target: nt, amount: flock(100) }),
            (n4, TxKind::Stake { target: nt, amount: flock(100) }),
            (v1, TxKind::Stake { target: vt, amount: flock(200) }),
            (v2, TxKind::Stake { target: vt, amount: flock(200) }),
            (v3, TxKind::Stake { target: vt, amount: flock(100) }),
            (n1, TxKind::SetShare { share: Ppm::percent(20).unwrap() }),
        ],
    );
    block(&mut l, vec![(d, TxKind::Delegate { operator: n1.address(), amount: flock(100) })]);

    // Train: n3 copies n1's artifact (committing later), n4's file is corrupt.
    let art = |s: &str| Hash::of(s.as_bytes());
    let salt = |s: &str| Hash::of(format!("salt-{s}").as_bytes());
    let subs = [
        (n1, art("model-1"), salt("1")),
        (n2, art("model-2"), salt("2")),
        (n3, art("model-1"), salt("3")),
        (n4, art("corrupt"), salt("4")),
    ];
    advance_to(&mut l, task, "train");
    for (n, a, s) in &subs[..2] {
        block(
            &mut l,
            vec![(
                *n,
                TxKind::ArenaCommit {
                    task,
                    commitment: submission_commitment(task, 0, &n.address(), a, s),
                },
            )],
        );
    }
    block(
        &mut l,
        vec![
            (
                n3,
                TxKind::ArenaCommit {
                    task,
                    commitment: submission_commitment(
                        task,
                        0,
                        &n3.address(),
                        &subs[2].1,
                        &subs[2].2,
                    ),
                },
            ),
            (
                n4,
                TxKind::ArenaCommit {
                    task,
                    commitment: submission_commitment(
                        task,
                        0,
                        &n4.address(),
                        &subs[3].1,
                        &subs[3].2,
                    ),
                },
            ),
        ],
    );
    advance_to(&mut l, task, "reveal");
    block(
        &mut l,
        subs.iter()
            .map(|(n, a, s)| (*n, TxKind::ArenaReveal { task, artifact: *a, salt: *s }))
            .collect(),
    );
    block(
        &mut l,
        vec![(
            c,
            TxKind::ArenaRevealValidation {
                task,
                set_hash: Hash::of(&[b'v', 0]),
                salt: Hash::of(b"vsalt"),
            },
        )],
    );

    // Validate: all three validators are drawn for every submission (k = 3); the draw checks.
    advance_to(&mut l, task, "validate_commit");
    advance(&mut l, 1); // the draw happens at the first block of the phase
    let draw = l.state().arena_draws.get(&(task, 0)).unwrap().clone();
    for i in 0..4u32 {
        let assigned = l.state().arena_assignments.get(&(task, 0, i)).unwrap().clone();
        assert_eq!(assigned.len(), 3);
        verify_draw(&draw, task, 0, i, &assigned).unwrap();
    }
    let m = |x: u64| Score(x * 10_000); // hundredths of a bit per byte
    let honest = [m(100), m(150), m(100), Score::WORST];
    let lazy = [m(105), m(150), m(300), m(200)];
    let scores = [(v1, honest), (v2, honest), (v3, lazy)];
    let mut commits = Vec::new();
    for (v, ss) in &scores {
        for (i, sc) in ss.iter().enumerate() {
            commits.push((
                *v,
                TxKind::ArenaScoreCommit {
                    task,
                    submission: i as u32,
                    commitment: score_commitment(task, 0, i as u32, &v.address(), *sc, &salt("v")),
                },
            ));
        }
    }
    block(&mut l, commits);
    advance_to(&mut l, task, "validate_reveal");
    let mut reveals = Vec::new();
    for (v, ss) in &scores {
        for (i, sc) in ss.iter().enumerate() {
            reveals.push((
                *v,
                TxKind::ArenaScoreReveal {
                    task,
                    submission: i as u32,
                    score: *sc,
                    salt: salt("v"),
                },
            ));
        }
    }
    block(&mut l, reveals);
    let community_before = l.globals().community_pool;
    advance_to(&mut l, task, "ended");
    // Settled at the round's last block: δ = 10% is claimable now, the rest vests to the end.
    assert_eq!(l.state().claimable_own(&n1.address(), l.height()), flock(240));
    assert_eq!(l.state().vesting_own(&n1.address(), l.height()), flock(2_160));
    advance(&mut l, 1);

    let res = l.state().arena_results.get(&(task, 0)).unwrap().clone();
    assert_eq!(res.budget, flock(10_000));
    // Σt = 400 own + 100 delegated = 500 = Σs → nodes get 10,000 × (0.1 + 0.8 × 0.5) = 5,000.
    // Ranks: n1 (1.00 BPB, stake 200 with delegation), n2 (1.50, stake 100); ratio 50%:
    // weights 200 and 50 → 4,000 and 1,000. The copier and the corrupt file earn nothing.
    let reward_of =
        |n: &Keypair| res.ranking.iter().find(|r| r.node == n.address()).unwrap().clone();
    assert_eq!(reward_of(n1).reward, flock(4_000));
    assert_eq!(reward_of(n1).score, m(100));
    assert_eq!(reward_of(n2).reward, flock(1_000));
    assert_eq!(reward_of(n3).reward, Amount::ZERO);
    assert_eq!(reward_of(n3).duplicate_of, Some(0));
    assert_eq!(reward_of(n4).reward, Amount::ZERO);
    assert_eq!(reward_of(n4).score, Score::WORST);
    assert_eq!(res.ranking[0].node, n1.address(), "the best honest node ranks first");
    assert_eq!(res.nodes_paid, flock(5_000));
    // n1's 4,000: half is delegation-attributable (100 of 200); σ = 20% → operator 2,400, pool
    // 1,600; δ = 10% now: operator 240 now / 2,160 vested, pool 160 now / 1,440 vested.
    assert_eq!(
        l.state().claimable_own(&n1.address(), l.height()),
        flock(2_400),
        "released at the task's end"
    );
    assert_eq!(l.state().vesting_own(&n1.address(), l.height()), Amount::ZERO);
    // Validators: v1, v2 agree with consensus (quality 100%); v3 is 5% off on one submission
    // (50%), exact on one (100%), far off on two (0%) → 37.5%. Weights 200, 200, 37.5 of 5,000.
    let q =
        |v: &Keypair| res.validators.iter().find(|o| o.validator == v.address()).unwrap().clone();
    assert_eq!(q(v1).quality, Ppm::ONE);
    assert_eq!(q(v3).quality, Ppm::from_ppm(375_000).unwrap());
    assert_eq!(q(v1).reward, Amount(2_285_714_285_714_285_714_285));
    assert_eq!(q(v2).reward, Amount(2_285_714_285_714_285_714_285));
    assert_eq!(q(v3).reward, Amount(428_571_428_571_428_571_428));
    assert!(q(v3).reward < q(v1).reward, "the lazy validator earns less");
    assert_eq!(res.carried, Amount(2), "rounding dust is carried, not lost");
    assert_eq!(
        l.globals().community_pool,
        community_before.checked_add(Amount(2)).unwrap(),
        "and returned when the task ends"
    );
    // Delegators of the winner receive their share.
    let claim = sign(
        d,
        l.state().account(&d.address()).nonce,
        TxKind::Claim { from: flock_ledger::ClaimFrom::Pool { operator: n1.address() } },
    );
    let r = apply(&mut l, vec![claim]).unwrap();
    let Some(flock_ledger::Event::Claimed { gross, .. }) = r.txs[0].events.last() else {
        panic!("{:?}", r.txs[0])
    };
    assert_eq!(*gross, flock(1_600));
    // Stake unlocks at the end.
    block(&mut l, vec![(n2, TxKind::Unstake { target: nt, amount: flock(100) })]);
    assert_conserved(&l);
}

#[test]
fn missed_reveals_are_slashed_and_bad_input_is_refused_untouched() {
    let p = Params { epoch_length: 1_000_000, ..params() };
    let (mut l, k) = setup(p);
    let (c, n1, n2, v1, v2) = (&k[0], &k[1], &k[2], &k[3], &k[4]);
    let mut s = spec(c, 1, flock(1_000));
    s.validators_per_submission = 2;
    block(&mut l, vec![(c, TxKind::ArenaCreate { spec: Box::new(s.clone()) })]);
    let task = 1;
    let (nt, vt) = (node_target(task), arena::validator_target(task));
    block(
        &mut l,
        vec![
            (n1, TxKind::Stake { target: nt, amount: flock(100) }),
            (n2, TxKind::Stake { target: nt, amount: flock(100) }),
            (v1, TxKind::Stake { target: vt, amount: flock(100) }),
            (v2, TxKind::Stake { target: vt, amount: flock(100) }),
        ],
    );

    let reject = |l: &mut Ledger, key: &Keypair, kind: TxKind| -> TxError {
        let before = l.state().digest();
        let tx = sign(key, l.state().account(&key.address()).nonce, kind);
        let e = l.apply_pending_tx(&tx).unwrap_err();
        assert_eq!(l.state().digest(), before, "{e}");
        e
    };
    // Invalid specs.
    let mut bad = s.clone();
    bad.gamma = Ppm::percent(60).unwrap();
    assert!(matches!(
        reject(&mut l, c, TxKind::ArenaCreate { spec: Box::new(bad) }),
        TxError::InvalidTask(_)
    ));
    let mut bad = s;
    bad.deposit = flock(1);
    assert!(matches!(
        reject(&mut l, c, TxKind::ArenaCreate { spec: Box::new(bad) }),
        TxError::InvalidTask(_)
    ));
    // Stake in both roles.
    assert!(matches!(
        reject(&mut l, n1, TxKind::Stake { target: vt, amount: flock(100) }),
        TxError::RoleConflict { .. }
    ));

    advance_to(&mut l, task, "train");
    let a = Hash::of(b"m1");
    let salt = Hash::of(b"s1");
    // Not staked; reveal in the wrong phase; reveal without commit.
    assert!(matches!(
        reject(&mut l, c, TxKind::ArenaCommit { task, commitment: Hash::ZERO }),
        TxError::NotStaked { .. }
    ));
    assert!(matches!(
        reject(&mut l, n1, TxKind::ArenaReveal { task, artifact: a, salt }),
        TxError::WrongPhase { expected: "reveal", .. }
    ));
    assert_eq!(
        reject(&mut l, n1, TxKind::ArenaCommit { task: 99, commitment: Hash::ZERO }),
        TxError::UnknownTask(99)
    );
    block(
        &mut l,
        vec![(
            n1,
            TxKind::ArenaCommit {
                task,
                commitment: submission_commitment(task, 0, &n1.address(), &a, &salt),
            },
        )],
    );
    assert!(matches!(
        reject(&mut l, n1, TxKind::ArenaCommit { task, commitment: Hash::ZERO }),
        TxError::AlreadyCommitted { .. }
    ));
    advance_to(&mut l, task, "reveal");
    // Commit after the phase.
    assert!(matches!(
        reject(&mut l, n2, TxKind::ArenaCommit { task, commitment: Hash::ZERO }),
        TxError::WrongPhase { expected: "train", .. }
    ));
    assert!(matches!(
        reject(&mut l, n2, TxKind::ArenaReveal { task, artifact: a, salt }),
        TxError::NoCommit { .. }
    ));
    // Someone else's artifact with n1's salt does not match n1's commitment; nor n1's with another salt.
    assert_eq!(
        reject(&mut l, n1, TxKind::ArenaReveal { task, artifact: Hash::of(b"other"), salt }),
        TxError::RevealMismatch
    );
    assert_eq!(
        reject(&mut l, v1, TxKind::ArenaRevealValidation { task, set_hash: Hash::ZERO, salt }),
        TxError::NotCreator(task)
    );
    assert_eq!(
        reject(&mut l, c, TxKind::ArenaRevealValidation { task, set_hash: Hash::ZERO, salt }),
        TxError::RevealMismatch
    );
    block(
        &mut l,
        vec![
            (n1, TxKind::ArenaReveal { task, artifact: a, salt }),
            (
                c,
                TxKind::ArenaRevealValidation {
                    task,
                    set_hash: Hash::of(&[b'v', 0]),
                    salt: Hash::of(b"vsalt"),
                },
            ),
        ],
    );
    advance_to(&mut l, task, "validate_commit");
    advance(&mut l, 1);
    // A validator not drawn (a training node here) cannot score; v1 and v2 are both drawn (k = 2).
    let e = reject(
        &mut l,
        n2,
        TxKind::ArenaScoreCommit { task, submission: 0, commitment: Hash::ZERO },
    );
    assert!(matches!(e, TxError::NotAssigned { .. }), "{e}");
    assert!(matches!(
        reject(
            &mut l,
            v1,
            TxKind::ArenaScoreCommit { task, submission: 7, commitment: Hash::ZERO }
        ),
        TxError::UnknownSubmission { .. }
    ));
    let sc = Score(1_000_000);
    block(
        &mut l,
        vec![
            (
                v1,
                TxKind::ArenaScoreCommit {
                    task,
                    submission: 0,
                    commitment: score_commitment(task, 0, 0, &v1.address(), sc, &salt),
                },
            ),
            (
                v2,
                TxKind::ArenaScoreCommit {
                    task,
                    submission: 0,
                    commitment: score_commitment(task, 0, 0, &v2.address(), sc, &salt),
                },
            ),
        ],
    );
    advance_to(&mut l, task, "validate_reveal");
    // v2 tries to reveal another score than it committed: refused; it then never reveals.
    assert_eq!(
        reject(
            &mut l,
            v2,
            TxKind::ArenaScoreReveal { task, submission: 0, score: Score(2_000_000), salt }
        ),
        TxError::RevealMismatch
    );
    block(&mut l, vec![(v1, TxKind::ArenaScoreReveal { task, submission: 0, score: sc, salt })]);
    assert_eq!(
        reject(&mut l, v1, TxKind::ArenaScoreReveal { task, submission: 0, score: sc, salt }),
        TxError::AlreadyRevealed
    );
    assert!(matches!(
        l.state().arena_task(task).unwrap().phase_at(l.height().next()),
        Phase::ValidateReveal { .. }
    ));
    advance_to(&mut l, task, "ended");
    advance(&mut l, 1);
    let res = l.state().arena_results.get(&(task, 0)).unwrap().clone();
    let o2 = res.validators.iter().find(|o| o.validator == v2.address()).unwrap();
    assert_eq!(o2.slashed, flock(5), "5% of 100 for the missed reveal");
    assert_eq!(o2.reward, Amount::ZERO);
    assert_eq!(l.state().own_stake(&v2.address(), &vt), flock(95));
    assert_eq!(res.ranking[0].reward, res.nodes_paid);
    assert_eq!(
        res.budget,
        "1002.5".parse().unwrap(),
        "the pool half of the slash (2.5) joins the budget"
    );
    assert_conserved(&l);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the stakes, scores, reveals and parameters: payouts plus the carried
        /// remainder equal the budget exactly, and supply is conserved.
        #[test]
        fn payouts_plus_remainder_equal_the_budget(
            node_stakes in proptest::collection::vec(10u64..5_000, 1..5),
            val_stakes in proptest::collection::vec(10u64..5_000, 1..4),
            scores in proptest::collection::vec(proptest::option::of(0u64..5_000_000), 16),
            gamma in 0u32..=500_000,
            ratio in 1u32..=1_000_000,
            delta in 0u32..=1_000_000,
            deposit in 100u64..9_000,
            epoch in 3u64..20,
        ) {
            let p = Params { epoch_length: epoch, reward_per_epoch: flock(777), ..params() };
            let (mut l, _) = setup(p);
            let n = node_stakes.len();
            let keys: Vec<Keypair> = (0..n + val_stakes.len() + 1).map(|i| Keypair::dev(&format!("prop-{i}"))).collect();
            KEYS.with(|ks| ks.borrow_mut().extend(keys.clone()));
            let funder = KEYS.with(|ks| ks.borrow()[0].clone());
            block(&mut l, keys.iter().map(|k| (&funder, TxKind::Transfer { to: k.address(), amount: flock(10_000) })).collect());
            let c = &keys[0];
            let mut s = spec(c, 2, flock(deposit));
            s.gamma = Ppm::from_ppm(gamma).unwrap();
            s.rank_ratio = Ppm::from_ppm(ratio).unwrap();
            s.delta = Ppm::from_ppm(delta).unwrap();
            s.validators_per_submission = 2;
            block(&mut l, vec![(c, TxKind::ArenaCreate { spec: Box::new(s) })]);
            let task = 1;
            let nodes = &keys[1..=n];
            let vals = &keys[n + 1..];
            let mut stakes = Vec::new();
            for (k, st) in nodes.iter().zip(&node_stakes) {
                stakes.push((k, TxKind::Stake { target: node_target(task), amount: flock(*st) }));
            }
            for (k, st) in vals.iter().zip(&val_stakes) {
                stakes.push((k, TxKind::Stake { target: arena::validator_target(task), amount: flock(*st) }));
            }
            block(&mut l, stakes);
            for round in 0..2u32 {
                advance_to(&mut l, task, "train");
                let salt = Hash::of(b"x");
                block(&mut l, nodes.iter().enumerate().map(|(i, k)| (k, TxKind::ArenaCommit { task, commitment: submission_commitment(task, round, &k.address(), &Hash::of(&[i as u8 % 3]), &salt) })).collect());
                advance_to(&mut l, task, "reveal");
                let mut txs: Vec<_> = nodes.iter().enumerate().map(|(i, k)| (k, TxKind::ArenaReveal { task, artifact: Hash::of(&[i as u8 % 3]), salt })).collect();
                txs.push((c, TxKind::ArenaRevealValidation { task, set_hash: Hash::of(&[b'v', round as u8]), salt: Hash::of(b"vsalt") }));
                block(&mut l, txs);
                advance_to(&mut l, task, "validate_commit");
                advance(&mut l, 1);
                let mut commits = Vec::new();
                let mut reveals = Vec::new();
                for i in 0..n as u32 {
                    let assigned = l.state().arena_assignments.get(&(task, round, i)).cloned().unwrap_or_default();
                    for (j, v) in assigned.iter().enumerate() {
                        let key = vals.iter().find(|k| k.address() == *v).unwrap();
                        let sc = scores[(i as usize * 2 + j) % scores.len()].map(Score).unwrap_or(Score::WORST);
                        commits.push((key, TxKind::ArenaScoreCommit { task, submission: i, commitment: score_commitment(task, round, i, v, sc, &salt) }));
                        if (i as usize + j) % 4 != 3 {
                            reveals.push((key, TxKind::ArenaScoreReveal { task, submission: i, score: sc, salt }));
                        }
                    }
                }
                block(&mut l, commits);
                advance_to(&mut l, task, "validate_reveal");
                block(&mut l, reveals);
                let last = l.state().arena_task(task).unwrap().round_last_block(round);
                while l.height() < last {
                    advance(&mut l, 1);
                }
                let res = l.state().arena_results.get(&(task, round)).unwrap().clone();
                prop_assert_eq!(res.nodes_paid.0 + res.validators_paid.0 + res.carried.0, res.budget.0);
                let paid: u128 = res.ranking.iter().map(|r| r.reward.0).sum::<u128>() + res.validators.iter().map(|v| v.reward.0).sum::<u128>();
                prop_assert_eq!(paid, res.nodes_paid.0 + res.validators_paid.0);
                prop_assert!(l.state().supply().is_conserved());
            }
            prop_assert_eq!(l.state().arena_task(task).unwrap().status, arena::TaskStatus::Finished);
        }
    }
}
