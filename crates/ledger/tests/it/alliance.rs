//! FL Alliance on the ledger: draws, tally, rewards, slashing, removal, bad input.

use crate::common::*;
use flock_ledger::{
    alliance::{
        make_draw, member_target, vote_commitment, Aggregation, AlliancePhases, AllianceStatus,
        AllianceTaskSpec, MemberRole, Privacy, Vote,
    },
    test_utils::{apply, sign},
    Ledger, Params, TxError, TxKind, TxStatus,
};
use flock_primitives::{Address, Amount, Hash, Keypair, Ppm};

fn spec(rounds: u32, min_members: u32) -> AllianceTaskSpec {
    AllianceTaskSpec {
        title: "glucose".into(),
        model: Hash::of(b"init"),
        rounds,
        min_members,
        max_members: 5,
        min_stake: flock(95),
        proposer_ratio: Ppm::percent(40).unwrap(),
        slash_rate: Ppm::percent(10).unwrap(),
        proposer_share: Ppm::percent(50).unwrap(),
        reward_pool: flock(1_000),
        aggregation: Aggregation::TrimmedMean { trim: 1 },
        privacy: Privacy::Plaintext,
        phases: AlliancePhases { join: 16, propose: 6, vote_commit: 7, vote_reveal: 6 },
    }
}

fn run(l: &mut Ledger, k: &Keypair, kind: TxKind) -> Result<(), String> {
    let tx = sign(k, l.state().account(&k.address()).nonce, kind);
    let r = apply(l, vec![tx]).unwrap();
    assert_conserved(l);
    match &r.txs[0].status {
        TxStatus::Ok => Ok(()),
        TxStatus::Failed { code, .. } => Err(code.clone()),
    }
}

fn reject(l: &mut Ledger, k: &Keypair, kind: TxKind) -> TxError {
    let before = l.state().digest();
    let tx = sign(k, l.state().account(&k.address()).nonce, kind);
    let e = l.apply_pending_tx(&tx).unwrap_err();
    assert_eq!(l.state().digest(), before, "{e}");
    e
}

fn to_phase(l: &mut Ledger, task: u64, phase: &str) {
    for _ in 0..100 {
        if l.state().alliance_task(task).unwrap().phase_at(l.height().next()).name() == phase {
            return;
        }
        advance(l, 1);
    }
    panic!("no phase {phase}");
}

fn setup(p: Params) -> (Ledger, Vec<Keypair>, u64) {
    let (mut l, k) = fresh_with(p);
    run(&mut l, &k[0], TxKind::AllianceCreate { spec: Box::new(spec(2, 3)) }).unwrap();
    (l, k, 1)
}

#[test]
fn rounds_are_decided_paid_and_slashed() {
    let (mut l, k, task) = setup(Params { epoch_length: 1_000_000, ..params() });
    for m in &k[1..6] {
        run(&mut l, m, TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    }
    // Plain staking cannot bypass the join rules.
    assert_eq!(
        reject(&mut l, &k[0], TxKind::Stake { target: member_target(task), amount: flock(100) }),
        TxError::TargetClosed(member_target(task))
    );
    to_phase(&mut l, task, "propose");
    advance(&mut l, 1);
    assert_eq!(l.state().alliance_task(task).unwrap().status, AllianceStatus::Running);

    for round in 0..2u32 {
        if l.state().alliance_draws.get(&(task, round)).is_none() {
            advance(&mut l, 1); // roles are drawn at the round's first block
        }
        let draw = l.state().alliance_draws.get(&(task, round)).unwrap().clone();
        // The draw re-checks from public data: the members, their stakes and the block seed.
        let members: Vec<(Address, Amount)> = draw.members.iter().map(|m| (m.0, m.1)).collect();
        assert_eq!(
            make_draw(&members, draw.seed, task, round, Ppm::percent(40).unwrap(), draw.height),
            draw
        );
        let key = |a: &Address| k.iter().find(|x| x.address() == *a).unwrap().clone();
        let proposers: Vec<Keypair> = draw
            .members
            .iter()
            .filter(|m| m.2 == MemberRole::Proposer)
            .map(|m| key(&m.0))
            .collect();
        let voters: Vec<Keypair> =
            draw.members.iter().filter(|m| m.2 == MemberRole::Voter).map(|m| key(&m.0)).collect();
        assert!(!proposers.is_empty() && !voters.is_empty());
        // Roles are enforced.
        let e = reject(&mut l, &voters[0], TxKind::AlliancePropose { task, update: Hash::ZERO });
        assert!(matches!(e, TxError::NotAssigned { .. }), "{e}");
        for (i, p) in proposers.iter().enumerate() {
            run(
                &mut l,
                p,
                TxKind::AlliancePropose { task, update: Hash::of(&[round as u8, i as u8]) },
            )
            .unwrap();
        }
        to_phase(&mut l, task, "vote_commit");
        let agg = Hash::of(&[b'a', round as u8]);
        // Round 0: everyone accepts. Round 1: all but one reject.
        // With three or more voters, one of them accepts in round 1 (and is in the minority).
        let votes: Vec<Vote> = (0..voters.len())
            .map(|i| Vote {
                aggregate: agg,
                accept: round == 0 || (i == 0 && voters.len() >= 3),
                score: 1_000 + i as u64,
                penalties: vec![],
            })
            .collect();
        let salt = Hash::of(b"salt");
        let e = reject(
            &mut l,
            &proposers[0],
            TxKind::AllianceVoteCommit { task, commitment: Hash::ZERO },
        );
        assert!(matches!(e, TxError::NotAssigned { .. }), "a proposer cannot vote: {e}");
        for (v, vote) in voters.iter().zip(&votes) {
            run(
                &mut l,
                v,
                TxKind::AllianceVoteCommit {
                    task,
                    commitment: vote_commitment(task, round, &v.address(), vote, &salt),
                },
            )
            .unwrap();
        }
        let e =
            reject(&mut l, &voters[0], TxKind::AllianceVoteCommit { task, commitment: Hash::ZERO });
        assert!(matches!(e, TxError::AlreadyCommitted { .. }), "double vote: {e}");
        to_phase(&mut l, task, "vote_reveal");
        let mut forged = votes[0].clone();
        forged.accept = !forged.accept;
        assert_eq!(
            reject(&mut l, &voters[0], TxKind::AllianceVoteReveal { task, vote: forged, salt }),
            TxError::RevealMismatch
        );
        let pool_before = l.state().alliance_task(task).unwrap().pool;
        for (v, vote) in voters.iter().zip(&votes) {
            run(&mut l, v, TxKind::AllianceVoteReveal { task, vote: vote.clone(), salt }).unwrap();
        }
        let last = l.state().alliance_task(task).unwrap().round_start(round + 1);
        while l.height().next() < last {
            advance(&mut l, 1);
        }
        let res = l.state().alliance_rounds.get(&(task, round)).unwrap().clone();
        if round == 0 {
            assert!(res.accepted);
            assert_eq!(res.adopted, Some(agg));
            assert_eq!(l.state().alliance_task(task).unwrap().global_model, agg);
            // Pool 1,000 over 2 rounds: budget 500, half to proposers and half to voters,
            // equal stakes → equal shares (rounded down).
            assert_eq!(res.budget, flock(500));
            for p in &proposers {
                let r = res.rewards.iter().find(|r| r.0 == p.address()).unwrap().1;
                assert_eq!(r, flock(250).mul_div(1, proposers.len() as u128).unwrap());
            }
            for v in &voters {
                let r = res.rewards.iter().find(|r| r.0 == v.address()).unwrap().1;
                assert_eq!(r, flock(250).mul_div(1, voters.len() as u128).unwrap());
            }
            assert!(res.slashes.is_empty());
            let paid: u128 = res.rewards.iter().map(|r| r.1 .0).sum();
            assert_eq!(l.state().alliance_task(task).unwrap().pool.0, pool_before.0 - paid);
        } else {
            let accept_voters = usize::from(voters.len() >= 3);
            assert!(!res.accepted, "{res:?}");
            assert_eq!(
                l.state().alliance_task(task).unwrap().global_model,
                Hash::of(&[b'a', 0]),
                "the old model is kept"
            );
            // Proposers and the accepting minority lose 10% of 100 each.
            assert_eq!(res.slashes.len(), proposers.len() + accept_voters);
            for (_, amt, _) in &res.slashes {
                assert_eq!(*amt, flock(10));
            }
            for p in &proposers {
                assert!(!res.rewards.iter().any(|r| r.0 == p.address() && !r.1.is_zero()));
                // 90 < min 95: removed (stake moved to unbonding).
                assert!(res.removed.contains(&p.address()));
                assert!(l.state().own_stake(&p.address(), &member_target(task)).is_zero());
            }
            assert_eq!(l.state().alliance_task(task).unwrap().status, AllianceStatus::Finished);
        }
    }
    assert_conserved(&l);
}

#[test]
fn too_few_members_cancel_and_refund() {
    let (mut l, k, task) = setup(Params { epoch_length: 1_000_000, ..params() });
    let creator_before = l.state().balance(&k[0].address());
    run(&mut l, &k[1], TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    assert!(matches!(
        reject(&mut l, &k[2], TxKind::AllianceJoin { task, amount: flock(10) }),
        TxError::BelowMinimum { .. }
    ));
    to_phase(&mut l, task, "propose");
    advance(&mut l, 1);
    let t = l.state().alliance_task(task).unwrap();
    assert_eq!(t.status, AllianceStatus::Cancelled);
    assert_eq!(
        l.state().balance(&k[0].address()),
        creator_before.checked_add(flock(1_000)).unwrap()
    );
    assert!(l.state().own_stake(&k[1].address(), &member_target(task)).is_zero());
    assert!(matches!(
        reject(&mut l, &k[3], TxKind::AllianceJoin { task, amount: flock(100) }),
        TxError::WrongPhase { .. }
    ));
    assert_conserved(&l);
}

#[test]
fn the_member_cap_and_specs_are_enforced() {
    let (mut l, k, task) = setup(Params { epoch_length: 1_000_000, ..params() });
    let extra: Vec<Keypair> = (0..6).map(|i| Keypair::dev(&format!("cap-{i}"))).collect();
    for e in &extra {
        run(&mut l, &k[0], TxKind::Transfer { to: e.address(), amount: flock(200) }).unwrap();
    }
    for e in &extra[..5] {
        run(&mut l, e, TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    }
    assert!(matches!(
        reject(&mut l, &extra[5], TxKind::AllianceJoin { task, amount: flock(100) }),
        TxError::InvalidTask(_)
    ));
    let mut bad = spec(2, 3);
    bad.proposer_ratio = Ppm::ONE;
    assert!(matches!(
        reject(&mut l, &k[1], TxKind::AllianceCreate { spec: Box::new(bad) }),
        TxError::InvalidTask(_)
    ));
    let mut bad = spec(2, 1);
    bad.min_members = 1;
    assert!(matches!(
        reject(&mut l, &k[1], TxKind::AllianceCreate { spec: Box::new(bad) }),
        TxError::InvalidTask(_)
    ));
}

#[test]
fn running_tasks_receive_emission_by_stake() {
    // Epochs of 10 blocks, 1,000 FLOCK each: a running task takes everything (it is the only
    // product with stake), and the supply stays conserved.
    let (mut l, k, task) =
        setup(Params { epoch_length: 10, reward_per_epoch: flock(1_000), ..params() });
    for m in &k[1..4] {
        run(&mut l, m, TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    }
    to_phase(&mut l, task, "propose");
    advance(&mut l, 1);
    let before = l.state().alliance_task(task).unwrap().pool;
    let community = l.globals().community_pool;
    while l.height().0 % 10 != 0 {
        advance(&mut l, 1);
    }
    let after = l.state().alliance_task(task).unwrap().pool;
    assert_eq!(after.0 - before.0, flock(1_000).0);
    assert_eq!(l.globals().community_pool, community);
    assert_conserved(&l);
}

#[test]
fn a_mostly_discarded_update_is_slashed_in_an_accepted_round() {
    let (mut l, k, task) = setup(Params { epoch_length: 1_000_000, ..params() });
    for m in &k[1..6] {
        run(&mut l, m, TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    }
    to_phase(&mut l, task, "propose");
    advance(&mut l, 1);
    let draw = l.state().alliance_draws.get(&(task, 0)).unwrap().clone();
    let key = |a: &Address| k.iter().find(|x| x.address() == *a).unwrap().clone();
    let proposers: Vec<Keypair> =
        draw.members.iter().filter(|m| m.2 == MemberRole::Proposer).map(|m| key(&m.0)).collect();
    let voters: Vec<Keypair> =
        draw.members.iter().filter(|m| m.2 == MemberRole::Voter).map(|m| key(&m.0)).collect();
    for (i, p) in proposers.iter().enumerate() {
        run(&mut l, p, TxKind::AlliancePropose { task, update: Hash::of(&[9, i as u8]) }).unwrap();
    }
    to_phase(&mut l, task, "vote_commit");
    // Every voter's deterministic aggregation reports that update 0 was 90% trimmed.
    let vote = Vote {
        aggregate: Hash::of(b"agg"),
        accept: true,
        score: 7,
        penalties: vec![(0, Ppm::percent(90).unwrap())],
    };
    let salt = Hash::of(b"s");
    for v in &voters {
        run(
            &mut l,
            v,
            TxKind::AllianceVoteCommit {
                task,
                commitment: vote_commitment(task, 0, &v.address(), &vote, &salt),
            },
        )
        .unwrap();
    }
    to_phase(&mut l, task, "vote_reveal");
    for v in &voters {
        run(&mut l, v, TxKind::AllianceVoteReveal { task, vote: vote.clone(), salt }).unwrap();
    }
    let last = l.state().alliance_task(task).unwrap().round_start(1);
    while l.height().next() < last {
        advance(&mut l, 1);
    }
    let res = l.state().alliance_rounds.get(&(task, 0)).unwrap().clone();
    assert!(res.accepted);
    let bad = proposers[0].address();
    assert!(
        res.slashes
            .iter()
            .any(|(a, amt, why)| *a == bad && *amt == flock(10) && why.contains("discarded")),
        "{res:?}"
    );
    assert!(res.rewards.iter().all(|(a, amt)| *a != bad || amt.is_zero()));
    for p in &proposers[1..] {
        assert!(
            res.rewards.iter().any(|(a, amt)| *a == p.address() && !amt.is_zero()),
            "honest proposers are paid: {res:?}"
        );
    }
    assert_conserved(&l);
}

#[test]
fn secure_aggregation_keys_dropouts_and_reveals() {
    use flock_primitives::MaskSecret;
    let (mut l, k) = fresh_with(Params { epoch_length: 1_000_000, ..params() });
    // Secure aggregation reveals only a sum: a per-update rule is refused at creation.
    let bad = AllianceTaskSpec { privacy: Privacy::SecureAggregation, ..spec(2, 3) };
    assert_eq!(
        run(&mut l, &k[0], TxKind::AllianceCreate { spec: Box::new(bad) }),
        Err("invalid_task".into())
    );
    let ok = AllianceTaskSpec {
        privacy: Privacy::SecureAggregation,
        aggregation: Aggregation::Fedavg,
        proposer_ratio: Ppm::percent(60).unwrap(),
        ..spec(1, 3)
    };
    run(&mut l, &k[0], TxKind::AllianceCreate { spec: Box::new(ok) }).unwrap();
    let task: u64 = 1;
    let key = |m: &Keypair| MaskSecret::derive(&m.secret_bytes(), &task.to_le_bytes()).public();
    // Only members publish keys, and only valid group elements.
    let e = reject(&mut l, &k[1], TxKind::AllianceMaskKey { task, key: key(&k[1]) });
    assert!(matches!(e, TxError::NotStaked { .. }), "{e}");
    for m in &k[1..6] {
        run(&mut l, m, TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    }
    let e = reject(
        &mut l,
        &k[1],
        TxKind::AllianceMaskKey { task, key: flock_primitives::MaskPublicKey([0; 32]) },
    );
    assert_eq!(e.code(), "privacy_mode");
    // Members 1..=4 publish keys; member 5 does not.
    for m in &k[1..5] {
        run(&mut l, m, TxKind::AllianceMaskKey { task, key: key(m) }).unwrap();
    }
    assert_eq!(l.state().alliance_mask_key_of(task, &k[2].address()), Some(key(&k[2])));
    to_phase(&mut l, task, "propose");
    advance(&mut l, 2);
    // Keys are fixed once the task runs.
    let e = reject(&mut l, &k[1], TxKind::AllianceMaskKey { task, key: key(&k[1]) });
    assert!(matches!(e, TxError::WrongPhase { .. }), "{e}");
    let draw = l.state().alliance_draws.get(&(task, 0)).unwrap().clone();
    let find = |a: &Address| k.iter().find(|x| x.address() == *a).unwrap().clone();
    let proposers: Vec<Keypair> =
        draw.members.iter().filter(|m| m.2 == MemberRole::Proposer).map(|m| find(&m.0)).collect();
    assert!(proposers.len() >= 3, "the seed should draw at least 3 proposers at 60%");
    // A proposer without a key cannot post (its update could not be masked).
    if let Some(nokey) = proposers.iter().find(|p| p.address() == k[5].address()) {
        let e = reject(&mut l, nokey, TxKind::AlliancePropose { task, update: Hash::of(b"x") });
        assert_eq!(e.code(), "privacy_mode");
    }
    let keyed: Vec<&Keypair> = proposers.iter().filter(|p| p.address() != k[5].address()).collect();
    // The first keyed proposer drops out; the others post masked updates.
    let (dropped, survivors) = keyed.split_first().unwrap();
    for (i, p) in survivors.iter().enumerate() {
        run(&mut l, p, TxKind::AlliancePropose { task, update: Hash::of(&[i as u8]) }).unwrap();
    }
    let mut expect_dropped: Vec<Address> = proposers
        .iter()
        .map(|p| p.address())
        .filter(|a| !survivors.iter().any(|s| s.address() == *a))
        .collect();
    expect_dropped.sort();
    let mut got = l.state().alliance_dropped(task, 0);
    got.sort();
    assert_eq!(got, expect_dropped);
    // Reveals come in the vote-commit phase.
    let reveal = |p: &Keypair| -> Vec<(Address, Hash)> {
        expect_dropped
            .iter()
            .map(|d| (*d, Hash::of_parts("seed", &[&p.address().0, &d.0])))
            .collect()
    };
    let e = reject(
        &mut l,
        survivors[0],
        TxKind::AllianceUnmask { task, reveals: reveal(survivors[0]) },
    );
    assert!(matches!(e, TxError::WrongPhase { .. }), "{e}");
    to_phase(&mut l, task, "vote_commit");
    advance(&mut l, 1);
    // Only a proposer that posted reveals, naming exactly the dropped proposers, once.
    let e = reject(&mut l, dropped, TxKind::AllianceUnmask { task, reveals: reveal(dropped) });
    assert!(matches!(e, TxError::NotAssigned { .. }), "{e}");
    let e = reject(&mut l, survivors[0], TxKind::AllianceUnmask { task, reveals: vec![] });
    assert_eq!(e.code(), "privacy_mode");
    run(&mut l, survivors[0], TxKind::AllianceUnmask { task, reveals: reveal(survivors[0]) })
        .unwrap();
    let e = reject(
        &mut l,
        survivors[0],
        TxKind::AllianceUnmask { task, reveals: reveal(survivors[0]) },
    );
    assert_eq!(e, TxError::AlreadyRevealed);
    assert_eq!(l.state().alliance_unmasks_of(task, 0).len(), 1);
    // The other survivors keep their seeds: at the decision they are slashed for it, and the
    // survivor that revealed is not slashed for that.
    let stake = |l: &Ledger, a: &Address| l.state().own_stake(a, &member_target(task));
    let before: Vec<Amount> = survivors.iter().map(|p| stake(&l, &p.address())).collect();
    to_phase(&mut l, task, "ended");
    advance(&mut l, 2);
    let outcome = l.state().alliance_rounds.get(&(task, 0)).unwrap().clone();
    for (i, p) in survivors.iter().enumerate() {
        let masks = outcome
            .slashes
            .iter()
            .any(|(a, _, why)| *a == p.address() && why.contains("did not reveal its masks"));
        assert_eq!(masks, i > 0, "survivor {i}: {:?}", outcome.slashes);
        if i > 0 {
            assert!(stake(&l, &p.address()) < before[i]);
        }
    }
}

#[test]
fn privacy_modes_are_checked_at_creation_and_plaintext_tasks_take_no_keys() {
    let (mut l, k, task) = setup(params());
    let dp = |clip_micro, noise_micro| AllianceTaskSpec {
        privacy: Privacy::DifferentialPrivacy { clip_micro, noise_micro },
        ..spec(2, 3)
    };
    for s in [dp(0, 1_000_000), dp(1_000_000, 0), dp(1_000_000, 200_000_000)] {
        assert_eq!(
            run(&mut l, &k[0], TxKind::AllianceCreate { spec: Box::new(s) }),
            Err("invalid_task".into())
        );
    }
    run(&mut l, &k[0], TxKind::AllianceCreate { spec: Box::new(dp(1_000_000, 800_000)) }).unwrap();
    run(&mut l, &k[1], TxKind::AllianceJoin { task, amount: flock(100) }).unwrap();
    let key = flock_primitives::MaskSecret::derive(&[7; 32], b"x").public();
    let e = reject(&mut l, &k[1], TxKind::AllianceMaskKey { task, key });
    assert_eq!(e.code(), "privacy_mode");
}
