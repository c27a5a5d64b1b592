//! AI Marketplace on the ledger: hand-computed settlement and split, idempotent batches,
//! partial charges, delayed withdrawals, API keys, ratings, provenance from real Arena and
//! Alliance rounds, bad input with state untouched, and exact supply conservation.

use crate::common::*;
use flock_ledger::{
    alliance::{
        vote_commitment, Aggregation, AlliancePhases, AllianceTaskSpec, MemberRole, Privacy, Vote,
    },
    arena::{
        self, score_commitment, submission_commitment, validation_commitment, ArenaTaskSpec,
        Metric, Phases, Score,
    },
    market::{
        ListingSpec, ModelKind, Pricing, Product, ProvenanceClaim, RevenueSplit, UsageBatch,
        UsageCharge, UsageEntry,
    },
    test_utils::{apply, sign},
    BurnReason, Event, Ledger, Params, TxError, TxKind, TxStatus,
};
use flock_primitives::{Address, Amount, Hash, Keypair, Ppm};

// ---------------------------------------------------------------- helpers

/// Runs `kind` in its own block; asserts success and conservation; returns its events.
fn run(l: &mut Ledger, k: &Keypair, kind: TxKind) -> Vec<Event> {
    let tx = sign(k, l.state().account(&k.address()).nonce, kind);
    let r = apply(l, vec![tx]).unwrap();
    assert_eq!(r.txs[0].status, TxStatus::Ok, "{:?}", r.txs[0]);
    assert_conserved(l);
    r.txs[0].events.clone()
}

/// One block with one transaction per (distinct) signer, all of which must succeed.
fn block(l: &mut Ledger, txs: Vec<(&Keypair, TxKind)>) {
    let signed =
        txs.into_iter().map(|(k, kind)| sign(k, l.state().account(&k.address()).nonce, kind));
    let r = apply(l, signed.collect()).unwrap();
    for rc in &r.txs {
        assert_eq!(rc.status, TxStatus::Ok, "{rc:?}");
    }
    assert_conserved(l);
}

/// Submits through mempool admission; asserts the error leaves state bit-for-bit unchanged.
fn reject(l: &mut Ledger, k: &Keypair, kind: TxKind) -> TxError {
    let before = l.state().digest();
    let tx = sign(k, l.state().account(&k.address()).nonce, kind);
    let e = l.apply_pending_tx(&tx).expect_err("transaction should be rejected");
    assert_eq!(l.state().digest(), before, "state changed by a rejected tx ({e})");
    e
}

fn ppm(p: u32) -> Ppm {
    Ppm::percent(p).unwrap()
}

fn split(owner: u32, validators: u32, burn: u32) -> RevenueSplit {
    RevenueSplit { owner: ppm(owner), validators: ppm(validators), burn: ppm(burn) }
}

/// 2 FLOCK per 1,000 tokens, free calls, 70/20/10.
fn spec(name: &str, server: &Keypair, provenance: Option<ProvenanceClaim>) -> ListingSpec {
    ListingSpec {
        name: name.into(),
        server: server.address(),
        artifact: Hash::of(name.as_bytes()),
        kind: ModelKind::Language,
        price: Pricing { per_1k_tokens: flock(2), per_call: Amount::ZERO },
        split: split(70, 20, 10),
        provenance,
    }
}

fn list(l: &mut Ledger, owner: &Keypair, s: ListingSpec) -> Vec<Event> {
    run(l, owner, TxKind::MarketList { spec: Box::new(s) })
}

fn key(name: &str) -> Hash {
    Hash::of(format!("api-key-secret-{name}").as_bytes())
}

fn entry(key_hash: Hash, prompt: u64, completion: u64, calls: u64) -> UsageEntry {
    UsageEntry { key_hash, prompt_tokens: prompt, completion_tokens: completion, calls }
}

fn settle(listing: &str, id: &str, entries: Vec<UsageEntry>) -> TxKind {
    TxKind::MarketSettle {
        batch: UsageBatch { id: Hash::of(id.as_bytes()), listing: listing.into(), entries },
    }
}

fn settled(events: &[Event]) -> (Amount, Amount, Amount, Vec<(Address, Amount)>, Vec<UsageCharge>) {
    events
        .iter()
        .find_map(|e| match e {
            Event::MarketSettled { charged, shortfall, burned, payouts, charges, .. } => {
                Some((*charged, *shortfall, *burned, payouts.clone(), charges.clone()))
            }
            _ => None,
        })
        .expect("a market_settled event")
}

fn bal(l: &Ledger, k: &Keypair) -> Amount {
    l.state().balance(&k.address())
}

fn avail(l: &Ledger, k: &Keypair) -> Amount {
    l.state().market_escrow(&k.address()).available
}

/// A consumer with `deposit` FLOCK of credit and one API key named after it.
fn consumer(l: &mut Ledger, k: &Keypair, name: &str, deposit: Amount) -> Hash {
    run(l, k, TxKind::MarketDeposit { amount: deposit });
    run(l, k, TxKind::MarketKeyCreate { key_hash: key(name), label: name.into() });
    key(name)
}

fn p() -> Params {
    Params { epoch_length: 1_000_000, market_withdraw_delay: 5, ..params() }
}

fn server() -> Keypair {
    Keypair::dev("market-server")
}

// ------------------------------------------------------ a real Arena round

const PHASES: Phases = Phases { train: 4, reveal: 2, validate_commit: 2, validate_reveal: 2 };

fn arena_spec(creator: &Keypair) -> ArenaTaskSpec {
    ArenaTaskSpec {
        title: "text2sql".into(),
        base_model: Hash::of(b"base"),
        training_set: Hash::of(b"train"),
        validation_commitments: vec![validation_commitment(
            &creator.address(),
            0,
            &Hash::of(b"vset"),
            &Hash::of(b"vsalt"),
        )],
        max_params: 1_000_000,
        context_length: 256,
        metric: Metric::Bpb,
        phases: PHASES,
        min_node_stake: flock(10),
        min_validator_stake: flock(10),
        rank_ratio: ppm(50),
        gamma: ppm(10),
        delta: ppm(10),
        validators_per_submission: 3,
        deposit: flock(1_000),
    }
}

fn to_arena_phase(l: &mut Ledger, task: u64, want: &str) {
    for _ in 0..100 {
        if l.state().arena_task(task).unwrap().phase_at(l.height().next()).name() == want {
            return;
        }
        advance(l, 1);
    }
    panic!("phase {want} never came");
}

/// Task 1, one round: `creator` opens it, `node` submits `artifact`, all of `validators` are
/// drawn and the first `revealing` of them reveal a score of 1.25 BPB. Returns after the
/// round settled.
fn arena_round(
    l: &mut Ledger,
    creator: &Keypair,
    node: &Keypair,
    validators: &[&Keypair],
    revealing: usize,
    settle_it: bool,
) -> u64 {
    run(l, creator, TxKind::ArenaCreate { spec: Box::new(arena_spec(creator)) });
    let task = 1;
    let (nt, vt) = (arena::node_target(task), arena::validator_target(task));
    let mut stakes = vec![(node, TxKind::Stake { target: nt, amount: flock(100) })];
    stakes
        .extend(validators.iter().map(|v| (*v, TxKind::Stake { target: vt, amount: flock(100) })));
    block(l, stakes);
    to_arena_phase(l, task, "train");
    let (artifact, salt) = (Hash::of(b"winning-model"), Hash::of(b"node-salt"));
    let commitment = submission_commitment(task, 0, &node.address(), &artifact, &salt);
    run(l, node, TxKind::ArenaCommit { task, commitment });
    to_arena_phase(l, task, "reveal");
    block(
        l,
        vec![
            (node, TxKind::ArenaReveal { task, artifact, salt }),
            (
                creator,
                TxKind::ArenaRevealValidation {
                    task,
                    set_hash: Hash::of(b"vset"),
                    salt: Hash::of(b"vsalt"),
                },
            ),
        ],
    );
    to_arena_phase(l, task, "validate_commit");
    advance(l, 1); // validators are drawn at the first block of the phase
    let score = Score(1_250_000);
    let vsalt = Hash::of(b"score-salt");
    block(
        l,
        validators
            .iter()
            .map(|v| {
                let c = score_commitment(task, 0, 0, &v.address(), score, &vsalt);
                (*v, TxKind::ArenaScoreCommit { task, submission: 0, commitment: c })
            })
            .collect(),
    );
    to_arena_phase(l, task, "validate_reveal");
    block(
        l,
        validators[..revealing]
            .iter()
            .map(|v| (*v, TxKind::ArenaScoreReveal { task, submission: 0, score, salt: vsalt }))
            .collect(),
    );
    if settle_it {
        to_arena_phase(l, task, "ended");
        advance(l, 1);
        assert!(l.state().arena_results.contains(&(task, 0)));
    }
    task
}

fn arena_claim(task: u64, round: u32) -> Option<ProvenanceClaim> {
    Some(ProvenanceClaim { product: Product::Arena, task, round })
}

// ------------------------------------------------------------------ tests

#[test]
fn settlement_is_hand_computed_and_split_with_dust_to_the_owner() {
    let (mut l, k) = fresh_with(p());
    let (creator, node, v1, v2, v3, buyer) = (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5]);
    let srv = server();
    let task = arena_round(&mut l, creator, node, &[v1, v2, v3], 3, true);

    // The winning trainer lists its model; the ledger fills in the provenance.
    let ev = list(&mut l, node, spec("sql-winner", &srv, arena_claim(task, 0)));
    let listing = l.state().market_listing("sql-winner").unwrap();
    let prov = listing.provenance.clone().unwrap();
    assert!(matches!(&ev[0], Event::MarketListed { provenance: Some(p), .. } if *p == prov));
    let mut vs = vec![v1.address(), v2.address(), v3.address()];
    vs.sort();
    assert_eq!(prov.validators, vs, "the validators who revealed, sorted");
    assert_eq!(prov.score, Some(1_250_000));
    assert_eq!(prov.model, Some(Hash::of(b"winning-model")));
    assert_eq!((listing.owner, listing.active), (node.address(), true));

    let kh = consumer(&mut l, buyer, "buyer", flock(10));
    let before: Vec<Amount> = [node, v1, v2, v3].iter().map(|x| bal(&l, x)).collect();
    let burned_before = l.globals().burned;

    // 1,234 tokens at 2 FLOCK per 1,000 = 2.468 FLOCK.
    let ev = run(&mut l, &srv, settle("sql-winner", "batch-1", vec![entry(kh, 1_000, 234, 7)]));
    let (charged, shortfall, burned, payouts, charges) = settled(&ev);
    let cost: Amount = "2.468".parse().unwrap();
    assert_eq!(charged, cost);
    assert_eq!(shortfall, Amount::ZERO);
    assert_eq!(
        charges,
        vec![UsageCharge {
            key_hash: kh,
            consumer: buyer.address(),
            cost,
            charged: cost,
            shortfall: Amount::ZERO
        }]
    );
    // Burn 10% = 0.2468; validators 20% = 0.4936 / 3 = 0.164533333333333333 each (1 base
    // unit of dust); owner 70% = 1.7276 + the dust.
    let each = Amount(164_533_333_333_333_333);
    let owner = Amount(1_727_600_000_000_000_001);
    assert_eq!(burned, "0.2468".parse().unwrap());
    assert_eq!(owner.0 + 3 * each.0 + burned.0, cost.0, "every base unit is accounted for");
    let mut want = vec![(node.address(), owner)];
    want.extend(vs.iter().map(|v| (*v, each)));
    assert_eq!(payouts, want);
    assert_eq!(bal(&l, node), before[0].checked_add(owner).unwrap());
    for (i, v) in [v1, v2, v3].iter().enumerate() {
        assert_eq!(bal(&l, v), before[i + 1].checked_add(each).unwrap());
    }
    assert_eq!(l.globals().burned, burned_before.checked_add(burned).unwrap());
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Burn { from: None, amount, reason: BurnReason::Market } if *amount == burned
    )));
    assert_eq!(avail(&l, buyer), "7.532".parse().unwrap());
    assert_eq!(l.state().market_spent("sql-winner", &buyer.address()), cost);
    assert_eq!(l.state().market_listing("sql-winner").unwrap().volume, cost);
    let rec = l.state().market_batch("sql-winner", &Hash::of(b"batch-1")).unwrap();
    assert_eq!(
        (rec.entries, rec.charged, rec.shortfall, rec.server),
        (1, cost, Amount::ZERO, srv.address())
    );

    // Per-call pricing, and a token count that rounds up: 1 token at 2 FLOCK / 1k = 0.002.
    run(
        &mut l,
        node,
        TxKind::MarketUpdate {
            name: "sql-winner".into(),
            price: Some(Pricing { per_1k_tokens: Amount(7), per_call: "0.01".parse().unwrap() }),
            active: None,
            server: None,
        },
    );
    let ev = run(&mut l, &srv, settle("sql-winner", "batch-2", vec![entry(kh, 1, 0, 3)]));
    // ceil(1 × 7 / 1000) = 1 base unit, + 3 × 0.01 FLOCK.
    assert_eq!(settled(&ev).0, Amount(30_000_000_000_000_001));
}

#[test]
fn without_provenance_validators_the_owner_takes_their_part() {
    let (mut l, k) = fresh_with(p());
    let (owner, buyer) = (&k[0], &k[1]);
    let srv = server();
    list(&mut l, owner, spec("plain", &srv, None));
    let kh = consumer(&mut l, buyer, "b", flock(10));
    let before = bal(&l, owner);
    let ev = run(&mut l, &srv, settle("plain", "1", vec![entry(kh, 500, 500, 0)]));
    let (charged, _, burned, payouts, _) = settled(&ev);
    assert_eq!(charged, flock(2));
    assert_eq!(burned, "0.2".parse().unwrap());
    assert_eq!(payouts, vec![(owner.address(), "1.8".parse().unwrap())]);
    assert_eq!(bal(&l, owner), before.checked_add("1.8".parse().unwrap()).unwrap());
}

#[test]
fn a_repeated_batch_is_refused_and_charges_nothing() {
    let (mut l, k) = fresh_with(p());
    let (owner, buyer) = (&k[0], &k[1]);
    let srv = server();
    list(&mut l, owner, spec("m", &srv, None));
    list(&mut l, owner, spec("m2", &srv, None));
    let kh = consumer(&mut l, buyer, "b", flock(10));
    let usage = vec![entry(kh, 1_000, 0, 0)];
    run(&mut l, &srv, settle("m", "retry-me", usage.clone()));
    let (escrow, owner_bal, burned) = (avail(&l, buyer), bal(&l, owner), l.globals().burned);
    assert_eq!(escrow, flock(8));

    // Mempool admission refuses it with state untouched...
    let e = reject(&mut l, &srv, settle("m", "retry-me", usage.clone()));
    assert_eq!(
        e,
        TxError::BatchAlreadySettled { listing: "m".into(), batch: Hash::of(b"retry-me") }
    );
    assert_eq!(e.code(), "batch_already_settled");
    // ...and in a block it fails, consuming only its nonce.
    let tx =
        sign(&srv, l.state().account(&srv.address()).nonce, settle("m", "retry-me", usage.clone()));
    let r = apply(&mut l, vec![tx]).unwrap();
    assert!(
        matches!(&r.txs[0].status, TxStatus::Failed { code, .. } if code == "batch_already_settled")
    );
    assert!(r.txs[0].events.is_empty());
    assert_eq!((avail(&l, buyer), bal(&l, owner), l.globals().burned), (escrow, owner_bal, burned));
    assert!(l.state().market_batch_settled("m", &Hash::of(b"retry-me")));
    assert!(!l.state().market_batch_settled("m", &Hash::of(b"other")));

    // Ids are per listing: another listing's server cannot block this one by reusing an id.
    run(&mut l, &srv, settle("m2", "retry-me", usage));
    assert_eq!(avail(&l, buyer), flock(6));
    assert_conserved(&l);
}

#[test]
fn an_empty_escrow_is_charged_what_it_holds_and_the_shortfall_recorded() {
    let (mut l, k) = fresh_with(p());
    let (owner, buyer, broke) = (&k[0], &k[1], &k[2]);
    let srv = server();
    list(&mut l, owner, spec("m", &srv, None));
    let kb = consumer(&mut l, buyer, "b", flock(1));
    run(&mut l, broke, TxKind::MarketKeyCreate { key_hash: key("broke"), label: String::new() });
    let burned = l.globals().burned;

    // The buyer owes 2.468 but holds 1; the broke consumer owes 2 and holds nothing.
    let ev = run(
        &mut l,
        &srv,
        settle("m", "1", vec![entry(kb, 1_234, 0, 0), entry(key("broke"), 1_000, 0, 0)]),
    );
    let (charged, shortfall, burned_now, payouts, charges) = settled(&ev);
    assert_eq!(charged, flock(1));
    assert_eq!(shortfall, "3.468".parse().unwrap());
    assert_eq!(charges[0].charged, flock(1));
    assert_eq!(charges[0].shortfall, "1.468".parse().unwrap());
    assert_eq!(charges[1].cost, flock(2));
    assert_eq!(charges[1].charged, Amount::ZERO);
    assert_eq!(charges[1].shortfall, flock(2));
    // Split of what was actually charged: 0.1 burned, 0.9 to the owner.
    assert_eq!(burned_now, "0.1".parse().unwrap());
    assert_eq!(payouts, vec![(owner.address(), "0.9".parse().unwrap())]);
    assert_eq!(l.globals().burned, burned.checked_add(burned_now).unwrap());
    // Never an overdraft: the escrow is empty (and its record gone), balances untouched.
    assert_eq!(l.state().market_escrow(&buyer.address()), Default::default());
    assert!(l.state().market_escrows.get(&buyer.address()).is_none());
    assert_eq!(l.state().market_spent("m", &broke.address()), Amount::ZERO);
    let rec = l.state().market_batch("m", &Hash::of(b"1")).unwrap();
    assert_eq!((rec.charged, rec.shortfall), (flock(1), "3.468".parse().unwrap()));
}

#[test]
fn withdrawals_are_released_after_the_delay_and_stay_chargeable_until_then() {
    let (mut l, k) = fresh_with(Params { market_max_pending_withdrawals: 2, ..p() });
    let (owner, buyer) = (&k[0], &k[1]);
    let srv = server();
    list(&mut l, owner, spec("m", &srv, None));
    let kh = consumer(&mut l, buyer, "b", flock(10));
    let bal0 = bal(&l, buyer);

    let ev = run(&mut l, buyer, TxKind::MarketWithdraw { amount: flock(4) });
    let h = l.height();
    let release_at = h.saturating_add(5);
    assert_eq!(
        ev,
        vec![Event::MarketWithdrawalStarted {
            account: buyer.address(),
            amount: flock(4),
            release_at
        }]
    );
    let e = l.state().market_escrow(&buyer.address());
    assert_eq!(e.available, flock(6), "no longer spendable");
    assert_eq!(e.pending_total(), flock(4));
    assert_eq!(e.pending[0].release_at, release_at);
    assert_eq!(bal(&l, buyer), bal0, "not back yet");
    assert_eq!(
        reject(&mut l, buyer, TxKind::MarketWithdraw { amount: flock(7) }),
        TxError::InsufficientEscrow { need: flock(7), have: flock(6) }
    );

    // Usage served before the withdrawal is still paid from it: 6 available + 1 of the 4.
    let ev = run(&mut l, &srv, settle("m", "1", vec![entry(kh, 3_500, 0, 0)]));
    assert_eq!(settled(&ev).0, flock(7));
    let e = l.state().market_escrow(&buyer.address());
    assert_eq!((e.available, e.pending_total()), (Amount::ZERO, flock(3)));

    // A second withdrawal in flight, then the limit.
    run(&mut l, buyer, TxKind::MarketDeposit { amount: flock(3) });
    run(&mut l, buyer, TxKind::MarketWithdraw { amount: flock(1) });
    assert_eq!(
        reject(&mut l, buyer, TxKind::MarketWithdraw { amount: flock(1) }),
        TxError::TooManyWithdrawals { max: 2 }
    );

    // Released at the end of block `release_at`, not before.
    let bal1 = bal(&l, buyer);
    while l.height().next() < release_at {
        advance(&mut l, 1);
        assert_eq!(bal(&l, buyer), bal1);
    }
    let r = apply(&mut l, vec![]).unwrap();
    assert_eq!(l.height(), release_at);
    assert!(r
        .end
        .contains(&Event::MarketWithdrawalReleased { account: buyer.address(), amount: flock(3) }));
    assert_eq!(bal(&l, buyer), bal1.checked_add(flock(3)).unwrap());
    let e = l.state().market_escrow(&buyer.address());
    assert_eq!((e.available, e.pending_total(), e.pending.len()), (flock(2), flock(1), 1));
    advance(&mut l, 5);
    let e = l.state().market_escrow(&buyer.address());
    assert_eq!((e.available, e.pending.len()), (flock(2), 0));
    assert!(l.state().market_releases.is_empty());
    assert_conserved(&l);
}

#[test]
fn api_keys_bind_once_and_only_their_owner_revokes_them() {
    let (mut l, k) = fresh_with(Params { market_max_keys: 2, ..p() });
    let (a, b, owner) = (&k[0], &k[1], &k[2]);
    let srv = server();
    let (k1, k2, k3) = (key("1"), key("2"), key("3"));
    let ev = run(&mut l, a, TxKind::MarketKeyCreate { key_hash: k1, label: "laptop".into() });
    assert_eq!(
        ev,
        vec![Event::MarketKeyCreated { owner: a.address(), key_hash: k1, label: "laptop".into() }]
    );
    assert_eq!(l.state().market_key_owner(&k1), Some(a.address()));
    let create = |h: Hash| TxKind::MarketKeyCreate { key_hash: h, label: "x".into() };
    assert_eq!(reject(&mut l, a, create(k1)), TxError::ApiKeyExists(k1));
    assert_eq!(reject(&mut l, b, create(k1)), TxError::ApiKeyExists(k1));
    assert!(matches!(reject(&mut l, a, create(Hash::ZERO)), TxError::InvalidApiKey(_)));
    let long = TxKind::MarketKeyCreate { key_hash: k2, label: "x".repeat(65) };
    assert!(matches!(reject(&mut l, a, long), TxError::InvalidApiKey(_)));
    let control = TxKind::MarketKeyCreate { key_hash: k2, label: "a\nb".into() };
    assert!(matches!(reject(&mut l, a, control), TxError::InvalidApiKey(_)));
    run(&mut l, a, TxKind::MarketKeyCreate { key_hash: k2, label: "é".repeat(64) });
    assert_eq!(reject(&mut l, a, create(k3)), TxError::TooManyApiKeys { max: 2 });

    assert_eq!(
        reject(&mut l, b, TxKind::MarketKeyRevoke { key_hash: k1 }),
        TxError::NotKeyOwner(k1)
    );
    assert_eq!(
        reject(&mut l, a, TxKind::MarketKeyRevoke { key_hash: k3 }),
        TxError::UnknownApiKey(k3)
    );
    run(&mut l, a, TxKind::MarketKeyRevoke { key_hash: k1 });
    assert_eq!(l.state().market_key(&k1).unwrap().revoked, Some(l.height()));
    assert_eq!(
        reject(&mut l, a, TxKind::MarketKeyRevoke { key_hash: k1 }),
        TxError::ApiKeyRevoked(k1)
    );
    // Revoked hashes stay bound forever, but no longer count against the limit.
    assert_eq!(reject(&mut l, b, create(k1)), TxError::ApiKeyExists(k1));
    run(&mut l, a, create(k3));
    let mine: Vec<Hash> = l.state().market_keys_of(&a.address()).into_iter().map(|x| x.0).collect();
    let mut want = vec![k1, k2, k3];
    want.sort();
    assert_eq!(mine, want);
    assert!(l.state().market_keys_of(&b.address()).is_empty());

    // Usage served before a revocation is still settled against the revoked key.
    list(&mut l, owner, spec("m", &srv, None));
    run(&mut l, a, TxKind::MarketDeposit { amount: flock(5) });
    let ev = run(&mut l, &srv, settle("m", "late", vec![entry(k1, 1_000, 0, 0)]));
    assert_eq!(settled(&ev).0, flock(2));
    assert_eq!(
        reject(&mut l, &srv, settle("m", "x", vec![entry(key("nobody"), 1, 0, 0)])),
        TxError::UnknownApiKey(key("nobody"))
    );
}

#[test]
fn only_paying_consumers_rate_and_a_new_rating_replaces_the_old() {
    let (mut l, k) = fresh_with(p());
    let (owner, c1, c2, c3) = (&k[0], &k[1], &k[2], &k[3]);
    let srv = server();
    list(&mut l, owner, spec("m", &srv, None));
    let rate = |stars| TxKind::MarketRate { listing: "m".into(), stars };
    assert_eq!(reject(&mut l, c1, rate(4)), TxError::NotACustomer("m".into()));
    let (k1, k2) = (consumer(&mut l, c1, "c1", flock(1)), consumer(&mut l, c2, "c2", flock(1)));
    // c3 has a key but no credit: its usage is a shortfall, and it paid nothing.
    run(&mut l, c3, TxKind::MarketKeyCreate { key_hash: key("c3"), label: String::new() });
    run(
        &mut l,
        &srv,
        settle(
            "m",
            "1",
            vec![entry(k1, 10, 0, 0), entry(k2, 10, 0, 0), entry(key("c3"), 10, 0, 0)],
        ),
    );
    assert_eq!(l.state().market_spent("m", &c1.address()), "0.02".parse().unwrap());
    assert_eq!(reject(&mut l, c3, rate(5)), TxError::NotACustomer("m".into()));
    assert_eq!(reject(&mut l, c1, rate(0)), TxError::InvalidRating(0));
    assert_eq!(reject(&mut l, c1, rate(6)), TxError::InvalidRating(6));
    assert_eq!(
        reject(&mut l, c1, TxKind::MarketRate { listing: "nope".into(), stars: 3 }),
        TxError::UnknownListing("nope".into())
    );

    let ev = run(&mut l, c1, rate(4));
    assert_eq!(
        ev,
        vec![Event::MarketRated { listing: "m".into(), consumer: c1.address(), stars: 4 }]
    );
    run(&mut l, c1, rate(2));
    let m = l.state().market_listing("m").unwrap();
    assert_eq!((m.rating_sum, m.rating_count), (2, 1), "the second rating replaced the first");
    run(&mut l, c2, rate(5));
    let m = l.state().market_listing("m").unwrap();
    assert_eq!((m.rating_sum, m.rating_count), (7, 2));
    let mut want = vec![(c1.address(), 2), (c2.address(), 5)];
    want.sort();
    assert_eq!(l.state().market_ratings("m"), want);
}

#[test]
fn provenance_comes_from_a_settled_arena_round_and_fakes_are_refused() {
    let (mut l, k) = fresh_with(p());
    let (creator, node, v1, v2, v3, stranger) = (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5]);
    let srv = server();
    // v3 is drawn but never reveals: it is no part of the provenance.
    let task = arena_round(&mut l, creator, node, &[v1, v2, v3], 2, false);
    let listing = |name: &str, c| TxKind::MarketList { spec: Box::new(spec(name, &srv, c)) };
    // Before settlement the round has no provenance yet.
    assert!(matches!(
        reject(&mut l, node, listing("early", arena_claim(task, 0))),
        TxError::ProvenanceNotFound(_)
    ));
    to_arena_phase(&mut l, task, "ended");
    advance(&mut l, 1);

    for (claim, why) in [
        (arena_claim(99, 0), "no such task"),
        (arena_claim(task, 1), "not settled"),
        (Some(ProvenanceClaim { product: Product::Alliance, task, round: 0 }), "no such task"),
    ] {
        match reject(&mut l, node, listing("fake", claim)) {
            TxError::ProvenanceNotFound(m) => assert!(m.contains(why), "{m}"),
            e => panic!("{e}"),
        }
    }
    // Only the creator or the winning trainer can claim the round.
    for who in [v1, stranger] {
        assert_eq!(
            reject(&mut l, who, listing("theirs", arena_claim(task, 0))),
            TxError::NotProvenanceParty { task, round: 0 }
        );
    }
    list(&mut l, creator, spec("by-creator", &srv, arena_claim(task, 0)));
    let prov = l.state().market_listing("by-creator").unwrap().provenance.unwrap();
    let mut want = vec![v1.address(), v2.address()];
    want.sort();
    assert_eq!(prov.validators, want);
    assert_eq!((prov.product, prov.task, prov.round), (Product::Arena, task, 0));
    assert_eq!(prov.score, Some(1_250_000));
    // Provenance is read from the ledger: the stored listing matches the round record.
    let res = l.state().arena_results.get(&(task, 0)).unwrap().clone();
    assert_eq!(prov.model, Some(res.ranking[0].artifact));
}

#[test]
fn a_round_without_a_winner_is_no_provenance() {
    let (mut l, k) = fresh_with(p());
    let (creator, node, v1, v2, v3) = (&k[0], &k[1], &k[2], &k[3], &k[4]);
    // Nobody reveals a score: the only submission scores WORST.
    let task = arena_round(&mut l, creator, node, &[v1, v2, v3], 0, true);
    let e = reject(
        &mut l,
        creator,
        TxKind::MarketList { spec: Box::new(spec("m", &server(), arena_claim(task, 0))) },
    );
    assert!(matches!(&e, TxError::ProvenanceNotFound(m) if m.contains("no winner")), "{e}");
}

#[test]
fn provenance_comes_from_an_accepted_alliance_round() {
    let (mut l, k) = fresh_with(p());
    let outsider = Keypair::dev("outsider");
    let spec_a = AllianceTaskSpec {
        title: "glucose".into(),
        model: Hash::of(b"init"),
        rounds: 1,
        min_members: 3,
        max_members: 5,
        min_stake: flock(95),
        proposer_ratio: ppm(40),
        slash_rate: ppm(10),
        proposer_share: ppm(50),
        reward_pool: flock(1_000),
        aggregation: Aggregation::Fedavg,
        privacy: Privacy::Plaintext,
        phases: AlliancePhases { join: 4, propose: 3, vote_commit: 3, vote_reveal: 3 },
    };
    run(&mut l, &k[0], TxKind::AllianceCreate { spec: Box::new(spec_a) });
    let task = 1;
    block(
        &mut l,
        k[1..6].iter().map(|m| (m, TxKind::AllianceJoin { task, amount: flock(100) })).collect(),
    );
    let claim = Some(ProvenanceClaim { product: Product::Alliance, task, round: 0 });
    let listing = |c| TxKind::MarketList { spec: Box::new(spec("fl", &server(), c)) };
    assert!(matches!(reject(&mut l, &k[0], listing(claim)), TxError::ProvenanceNotFound(_)));

    let phase =
        |l: &Ledger| l.state().alliance_task(task).unwrap().phase_at(l.height().next()).name();
    while l.state().alliance_draws.get(&(task, 0)).is_none() {
        advance(&mut l, 1);
    }
    let draw = l.state().alliance_draws.get(&(task, 0)).unwrap().clone();
    let keyof = |a: &Address| k.iter().find(|x| x.address() == *a).unwrap();
    let role = |r| draw.members.iter().filter(move |m| m.2 == r).map(|m| keyof(&m.0));
    let (proposers, voters): (Vec<_>, Vec<_>) =
        (role(MemberRole::Proposer).collect(), role(MemberRole::Voter).collect());
    assert!(!proposers.is_empty() && !voters.is_empty(), "the fixed seed draws both roles");
    block(
        &mut l,
        proposers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, TxKind::AlliancePropose { task, update: Hash::of(&[i as u8]) }))
            .collect(),
    );
    while phase(&l) != "vote_commit" {
        advance(&mut l, 1);
    }
    let agg = Hash::of(b"aggregate");
    let salt = Hash::of(b"salt");
    let vote = |i: usize| Vote {
        aggregate: agg,
        accept: true,
        score: 1_000 + i as u64,
        penalties: vec![],
    };
    block(
        &mut l,
        voters
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = vote_commitment(task, 0, &v.address(), &vote(i), &salt);
                (*v, TxKind::AllianceVoteCommit { task, commitment: c })
            })
            .collect(),
    );
    while phase(&l) != "vote_reveal" {
        advance(&mut l, 1);
    }
    block(
        &mut l,
        voters
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, TxKind::AllianceVoteReveal { task, vote: vote(i), salt }))
            .collect(),
    );
    while l.state().alliance_rounds.get(&(task, 0)).is_none() {
        advance(&mut l, 1);
    }
    let round = l.state().alliance_rounds.get(&(task, 0)).unwrap().clone();
    assert!(round.accepted);

    assert_eq!(
        reject(&mut l, &outsider, listing(claim)),
        TxError::NotProvenanceParty { task, round: 0 }
    );
    // A member lists the adopted model.
    run(&mut l, voters[0], listing(claim));
    let prov = l.state().market_listing("fl").unwrap().provenance.unwrap();
    let mut want: Vec<Address> = voters.iter().map(|v| v.address()).collect();
    want.sort();
    assert_eq!(prov.validators, want, "the rewarded voters");
    assert_eq!(prov.score, round.score);
    assert_eq!(prov.model, Some(agg));
}

#[test]
fn bad_input_is_refused_with_state_untouched() {
    let (mut l, k) = fresh_with(Params { market_max_batch_entries: 2, ..p() });
    let (owner, other, buyer) = (&k[0], &k[1], &k[2]);
    let srv = server();
    let list_tx = |s: ListingSpec| TxKind::MarketList { spec: Box::new(s) };
    for name in ["", "Upper", "has space", "slash/", &"a".repeat(65)] {
        assert!(matches!(
            reject(&mut l, owner, list_tx(spec(name, &srv, None))),
            TxError::InvalidListing(_)
        ));
    }
    let mut bad = spec("m", &srv, None);
    bad.split = split(70, 20, 9);
    assert!(
        matches!(reject(&mut l, owner, list_tx(bad)), TxError::InvalidListing(m) if m.contains("sum"))
    );
    list(&mut l, owner, spec("m", &srv, None));
    assert_eq!(
        reject(&mut l, other, list_tx(spec("m", &srv, None))),
        TxError::ListingExists("m".into())
    );

    // Updates: owner only, something to change, an existing listing.
    let upd = |name: &str, active| TxKind::MarketUpdate {
        name: name.into(),
        price: None,
        active,
        server: None,
    };
    assert_eq!(reject(&mut l, other, upd("m", Some(false))), TxError::NotListingOwner("m".into()));
    assert!(matches!(reject(&mut l, owner, upd("m", None)), TxError::InvalidListing(_)));
    assert_eq!(reject(&mut l, owner, upd("zz", Some(false))), TxError::UnknownListing("zz".into()));

    // Escrow: zero amounts (stateless), more than the balance or the escrow.
    assert_eq!(
        reject(&mut l, buyer, TxKind::MarketDeposit { amount: Amount::ZERO }),
        TxError::ZeroAmount
    );
    assert_eq!(
        reject(&mut l, buyer, TxKind::MarketWithdraw { amount: Amount::ZERO }),
        TxError::ZeroAmount
    );
    assert!(matches!(
        reject(&mut l, buyer, TxKind::MarketDeposit { amount: flock(1_000_000) }),
        TxError::InsufficientBalance { .. }
    ));
    assert_eq!(
        reject(&mut l, buyer, TxKind::MarketWithdraw { amount: flock(1) }),
        TxError::InsufficientEscrow { need: flock(1), have: Amount::ZERO }
    );

    // Settlement: the server only, a known listing, 1..=max entries, each key once and
    // bound, costs that fit.
    let kh = consumer(&mut l, buyer, "b", flock(10));
    let one = vec![entry(kh, 1, 0, 0)];
    assert_eq!(
        reject(&mut l, owner, settle("m", "1", one.clone())),
        TxError::NotListingServer { listing: "m".into(), server: srv.address() }
    );
    assert_eq!(
        reject(&mut l, &srv, settle("zz", "1", one.clone())),
        TxError::UnknownListing("zz".into())
    );
    assert!(matches!(reject(&mut l, &srv, settle("m", "1", vec![])), TxError::InvalidBatch(_)));
    let kh2 = consumer(&mut l, other, "o", flock(10));
    let three = vec![entry(kh, 1, 0, 0), entry(kh2, 1, 0, 0), entry(key("x"), 1, 0, 0)];
    assert!(matches!(reject(&mut l, &srv, settle("m", "1", three)), TxError::InvalidBatch(_)));
    let twice = vec![entry(kh, 1, 0, 0), entry(kh, 1, 0, 0)];
    assert!(
        matches!(reject(&mut l, &srv, settle("m", "1", twice)), TxError::InvalidBatch(m) if m.contains("twice"))
    );
    // An unknown key after a valid one: nothing of the batch is charged.
    let mixed = vec![entry(kh, 1_000, 0, 0), entry(key("ghost"), 1, 0, 0)];
    assert_eq!(reject(&mut l, &srv, settle("m", "1", mixed)), TxError::UnknownApiKey(key("ghost")));
    run(
        &mut l,
        owner,
        TxKind::MarketUpdate {
            name: "m".into(),
            price: Some(Pricing { per_1k_tokens: Amount(u128::MAX), per_call: Amount::ZERO }),
            active: None,
            server: None,
        },
    );
    let huge = vec![entry(kh, u64::MAX, u64::MAX, 0)];
    assert!(
        matches!(reject(&mut l, &srv, settle("m", "1", huge)), TxError::InvalidBatch(m) if m.contains("overflows"))
    );

    // A new server takes over; the old one is refused; an inactive listing still settles
    // usage already served.
    let srv2 = Keypair::dev("server-2");
    run(
        &mut l,
        owner,
        TxKind::MarketUpdate {
            name: "m".into(),
            price: Some(Pricing { per_1k_tokens: flock(1), per_call: Amount::ZERO }),
            active: Some(false),
            server: Some(srv2.address()),
        },
    );
    let m = l.state().market_listing("m").unwrap();
    assert_eq!((m.active, m.server), (false, srv2.address()));
    assert!(matches!(
        reject(&mut l, &srv, settle("m", "1", one)),
        TxError::NotListingServer { .. }
    ));
    run(&mut l, &srv2, settle("m", "1", vec![entry(kh, 1_000, 0, 0)]));
    assert_eq!(avail(&l, buyer), flock(9));
}

#[test]
fn supply_is_conserved_exactly_through_market_activity() {
    let (mut l, k) = fresh_with(p());
    let (creator, node, v1, v2, v3, buyer) = (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5]);
    let srv = server();
    let task = arena_round(&mut l, creator, node, &[v1, v2, v3], 3, true);
    let mut s = spec("odd", &srv, arena_claim(task, 0));
    s.price = Pricing { per_1k_tokens: Amount(3_333_333_333_333_333_337), per_call: Amount(11) };
    s.split = split(33, 34, 33);
    list(&mut l, node, s);
    let s0 = l.state().supply();
    let kb = consumer(&mut l, buyer, "b", "12.345678901234567891".parse().unwrap());
    let kc = consumer(&mut l, creator, "c", flock(3));
    let mut burned = Amount::ZERO;
    for i in 0..6u64 {
        let ev = run(
            &mut l,
            &srv,
            settle(
                "odd",
                &format!("b{i}"),
                vec![entry(kb, 777 * i + 1, 13, i), entry(kc, 1_001, i, 1)],
            ),
        );
        burned = burned.checked_add(settled(&ev).2).unwrap();
        if i == 2 {
            let half = avail(&l, buyer).mul_ppm(ppm(50));
            run(&mut l, buyer, TxKind::MarketWithdraw { amount: half });
        }
    }
    advance(&mut l, 6); // the withdrawal is released
    let s1 = l.state().supply();
    assert!(s1.is_conserved(), "{s1:#?}");
    assert_eq!(s1.minted, s0.minted, "the marketplace mints nothing");
    assert_eq!(s1.burned, s0.burned.checked_add(burned).unwrap(), "burns are all reported");
    assert_eq!(s1.circulating(), s1.held());
    let escrow: u128 =
        [buyer, creator].iter().map(|x| l.state().market_escrow(&x.address()).total().0).sum();
    assert_eq!(s1.market_escrow, Amount(escrow));
    assert!(!burned.is_zero());
}

#[test]
fn market_transactions_round_trip_as_json_and_borsh() {
    let srv = server();
    let kinds = vec![
        TxKind::MarketList { spec: Box::new(spec("m", &srv, arena_claim(3, 1))) },
        TxKind::MarketUpdate { name: "m".into(), price: None, active: Some(false), server: None },
        TxKind::MarketDeposit { amount: flock(1) },
        TxKind::MarketWithdraw { amount: flock(1) },
        TxKind::MarketKeyCreate { key_hash: key("k"), label: "laptop".into() },
        TxKind::MarketKeyRevoke { key_hash: key("k") },
        settle("m", "1", vec![entry(key("k"), 1, 2, 3)]),
        TxKind::MarketRate { listing: "m".into(), stars: 5 },
    ];
    for kind in kinds {
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(serde_json::from_str::<TxKind>(&json).unwrap(), kind, "{json}");
        let bytes = flock_primitives::codec::encode(&kind);
        let back: TxKind = flock_primitives::codec::decode_bounded("tx", &bytes, 1 << 20).unwrap();
        assert_eq!(back, kind);
    }
    // Unset update fields may be left out of the JSON.
    let json = r#"{"type":"market_update","name":"m","active":true}"#;
    assert_eq!(
        serde_json::from_str::<TxKind>(json).unwrap(),
        TxKind::MarketUpdate { name: "m".into(), price: None, active: Some(true), server: None }
    );
    let v = serde_json::to_value(TxKind::MarketRate { listing: "m".into(), stars: 5 }).unwrap();
    assert_eq!(v["type"], "market_rate");
}

// ------------------------------------------------------ property: random market traffic

mod props {
    use super::*;
    use flock_ledger::test_utils::next_block;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Deposit(usize, u64),
        Withdraw(usize, u64),
        KeyCreate(usize, u8),
        KeyRevoke(usize, u8),
        Settle(u8, Vec<(u8, u64, u64)>),
        Rate(usize, u8),
        Reprice(u64, u64),
        EndBlock,
    }

    fn op() -> impl Strategy<Value = Op> {
        let a = 0..4usize;
        let amt = prop_oneof![4 => 1u64..50, 2 => 50u64..5_000, 1 => Just(u64::MAX / 4)];
        let entry = (0u8..8, 0u64..100_000, 0u64..20);
        prop_oneof![
            3 => (a.clone(), amt.clone()).prop_map(|(x, v)| Op::Deposit(x, v)),
            2 => (a.clone(), amt).prop_map(|(x, v)| Op::Withdraw(x, v)),
            2 => (a.clone(), 0u8..8).prop_map(|(x, h)| Op::KeyCreate(x, h)),
            1 => (a.clone(), 0u8..8).prop_map(|(x, h)| Op::KeyRevoke(x, h)),
            4 => (0u8..6, proptest::collection::vec(entry, 0..5)).prop_map(|(i, e)| Op::Settle(i, e)),
            1 => (a, 0u8..7).prop_map(|(x, s)| Op::Rate(x, s)),
            1 => (0u64..10_000, 0u64..1_000).prop_map(|(t, c)| Op::Reprice(t, c)),
            3 => Just(Op::EndBlock),
        ]
    }

    /// Accounts 0..4 consume, account 4 owns the listing, account 5 serves it. Checks supply
    /// after every block, that the write sets rebuild the state, and a restart from storage.
    fn drive(ops: &[Op]) -> Vec<Hash> {
        let (mut l, k) = fresh_with(Params { market_withdraw_delay: 3, ..p() });
        let mut nonces = [0u64; 6];
        let mut pending = Vec::new();
        let mut digests = Vec::new();
        let mut stored: BTreeMap<Vec<u8>, Vec<u8>> = l.state().all_entries().into_iter().collect();
        let _ = l.take_changes();
        let fl = |v: u64| Amount(u128::from(v) * Amount::UNIT / 10);
        let kh = |i: u8| key(&format!("prop-{i}"));
        let mut s = spec("m", &k[5], None);
        s.price = Pricing { per_1k_tokens: "0.37".parse().unwrap(), per_call: Amount(3) };
        s.split = split(60, 25, 15);
        let prelude = [(4, TxKind::MarketList { spec: Box::new(s) })];
        let mut batch = 0u64;
        let mut all = prelude.into_iter().map(|(i, t)| (Some((i, t)), None)).collect::<Vec<_>>();
        all.extend(ops.iter().cloned().map(|o| (None, Some(o))));
        all.push((None, Some(Op::EndBlock)));
        for (pre, o) in all {
            let (i, kind) = match (pre, o) {
                (Some(x), _) => x,
                (None, Some(Op::Deposit(a, v))) => (a, TxKind::MarketDeposit { amount: fl(v) }),
                (None, Some(Op::Withdraw(a, v))) => (a, TxKind::MarketWithdraw { amount: fl(v) }),
                (None, Some(Op::KeyCreate(a, h))) => {
                    (a, TxKind::MarketKeyCreate { key_hash: kh(h), label: format!("k{h}") })
                }
                (None, Some(Op::KeyRevoke(a, h))) => {
                    (a, TxKind::MarketKeyRevoke { key_hash: kh(h) })
                }
                (None, Some(Op::Settle(id, entries))) => {
                    batch += 1;
                    // Some ids repeat on purpose: those batches must fail without effect.
                    let id = if id == 0 { "repeat".to_owned() } else { format!("b{batch}") };
                    // Mostly keys that are bound by now; batch slot 1 keeps unknown ones too.
                    let entries = entries
                        .iter()
                        .filter(|(h, _, _)| {
                            batch % 6 == 1 || l.state().market_key(&kh(*h)).is_some()
                        })
                        .map(|(h, t, c)| entry(kh(*h), *t, *t / 3, *c))
                        .collect();
                    (5, settle("m", &id, entries))
                }
                (None, Some(Op::Rate(a, s))) => {
                    (a, TxKind::MarketRate { listing: "m".into(), stars: s })
                }
                (None, Some(Op::Reprice(t, c))) => (
                    4,
                    TxKind::MarketUpdate {
                        name: "m".into(),
                        price: Some(Pricing { per_1k_tokens: fl(t), per_call: Amount(c.into()) }),
                        active: None,
                        server: None,
                    },
                ),
                (None, Some(Op::EndBlock)) | (None, None) => {
                    let block = next_block(&l, std::mem::take(&mut pending));
                    let receipts = l.apply_block(&block).expect("blocks of well-formed txs apply");
                    for r in &receipts.txs {
                        let code = match &r.status {
                            TxStatus::Failed { code, message } => {
                                assert_ne!(code, "internal", "{message}");
                                code.as_str()
                            }
                            TxStatus::Ok => "ok",
                        };
                        if std::env::var("FLOCK_PROP_STATS").is_ok() {
                            let kind = r.events.first().map(|e| format!("{e:?}"));
                            let kind = kind.unwrap_or_default();
                            eprintln!(
                                "STAT {code} {}",
                                kind.split([' ', '{']).next().unwrap_or("")
                            );
                        }
                    }
                    let s = l.state().supply();
                    assert!(s.is_conserved(), "supply not conserved: {s:#?}");
                    for (key, val) in l.take_changes() {
                        match val {
                            Some(v) => stored.insert(key, v),
                            None => stored.remove(&key),
                        };
                    }
                    let now: BTreeMap<_, _> = l.state().all_entries().into_iter().collect();
                    assert!(now == stored, "write sets do not rebuild the state");
                    digests.push(l.state().digest());
                    continue;
                }
            };
            pending.push(sign(&k[i], nonces[i], kind));
            nonces[i] += 1;
        }
        let rebuilt =
            Ledger::from_entries(stored.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
        assert_eq!(rebuilt.state().digest(), l.state().digest());
        digests
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn market_traffic_conserves_supply_and_replays(ops in proptest::collection::vec(op(), 1..80)) {
            let a = drive(&ops);
            prop_assert_eq!(a, drive(&ops), "same blocks, same states");
        }
    }
}
