//! Wire-format guard: the canonical encodings of transactions, headers and receipts are pinned by
//! a hash over many seeded instances. Changing a wire type fails here until the new hash is
//! written down on purpose (and every signed transaction or stored block of the old format
//! becomes unreadable, so that needs a migration plan).

use flock_ledger::{
    Block, ClaimFrom, Event, Header, Receipt, Role, SeedProof, SignedTx, StakeTarget, Transaction,
    TxKind, TxStatus,
};
use flock_primitives::{codec, Address, Amount, Hash, Height, Keypair, Ppm};

fn kinds(i: u64) -> TxKind {
    let a = Address::module(&format!("a{i}"));
    let amt = Amount(u128::from(i) * 1_000_000_007);
    match i % 8 {
        0 => TxKind::Transfer { to: a, amount: amt },
        1 => TxKind::Burn { amount: amt },
        2 => TxKind::Stake { target: StakeTarget { task: i, role: Role::Validator }, amount: amt },
        3 => TxKind::Unstake { target: StakeTarget::NETWORK, amount: amt },
        4 => TxKind::Delegate { operator: a, amount: amt },
        5 => TxKind::Undelegate { operator: a, amount: amt },
        6 => TxKind::SetShare { share: Ppm::from_ppm((i * 7_919 % 1_000_000) as u32).unwrap() },
        _ => TxKind::Claim {
            from: if i % 16 == 7 { ClaimFrom::Own } else { ClaimFrom::Pool { operator: a } },
        },
    }
}

#[test]
fn wire_formats_are_pinned() {
    let mut all = Vec::new();
    for i in 0..256u64 {
        let key = Keypair::from_seed([i as u8; 32]);
        let tx: SignedTx = Transaction {
            chain_id: format!("c{i}"),
            signer: key.public(),
            nonce: i,
            kind: kinds(i),
        }
        .sign(&key);
        all.extend(codec::encode(&tx));
        let header = Header {
            chain_id: "c".into(),
            height: Height(i),
            parent_hash: Hash::of(&i.to_le_bytes()),
            parent_state_root: Hash::of(&(i + 1).to_le_bytes()),
            time_ms: i * 1000,
            seed: Hash::of(b"seed"),
            seed_proof: SeedProof::None,
            proposer: key.address(),
            tx_root: Block::compute_tx_root(std::slice::from_ref(&tx)),
        };
        all.extend(codec::encode(&header));
        let receipt = Receipt {
            tx_hash: tx.hash(),
            sender: key.address(),
            status: if i % 2 == 0 {
                TxStatus::Ok
            } else {
                TxStatus::Failed { code: "x".into(), message: "y".into() }
            },
            events: vec![Event::Transfer {
                from: key.address(),
                to: key.address(),
                amount: Amount(u128::from(i)),
            }],
        };
        all.extend(codec::encode(&receipt));
    }
    let got = Hash::of(&all).to_string();
    assert_eq!(
        got, "088421226c9ee6bb4ea43b95950ae3eea717de59e618d7da688ecee1f70f67f4",
        "wire format changed: new conformance hash {got}"
    );
}
