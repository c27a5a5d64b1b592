//! State proofs: membership and non-membership verify; anything tampered does not.

use flock_primitives::{Hash, Height};
use flock_storage::{verify_proof, StorageError, StoreConfig, EMPTY_STATE_ROOT, MAX_PROOF_BYTES};

use crate::util::{backends, commit, put};

fn is_invalid(r: Result<(), StorageError>) -> bool {
    matches!(r, Err(StorageError::InvalidProof(_)))
}

#[test]
fn membership_and_non_membership_verify_and_tampering_fails() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        let changes: Vec<_> = (0..40).map(|i| put(&format!("acct/{i}"), &format!("{i}"))).collect();
        let root = commit(store, 0, &changes);

        let member = store.prove(b"acct/7").unwrap();
        assert_eq!(member.height, Height(0));
        assert_eq!(member.root, root);
        assert_eq!(member.value.as_deref(), Some(&b"7"[..]));
        member.verify(&root, b"acct/7").unwrap();
        assert!(member.proof.len() <= MAX_PROOF_BYTES);

        let absent = store.prove(b"acct/99").unwrap();
        assert_eq!(absent.value, None);
        absent.verify(&root, b"acct/99").unwrap();

        // A different value, a claimed absence, a different key, another root: all rejected.
        let p = &member.proof;
        assert!(is_invalid(verify_proof(&root, b"acct/7", Some(b"8"), p)), "{name}");
        assert!(is_invalid(verify_proof(&root, b"acct/7", None, p)), "{name}");
        assert!(is_invalid(verify_proof(&root, b"acct/8", Some(b"7"), p)), "{name}");
        assert!(is_invalid(verify_proof(&Hash([1; 32]), b"acct/7", Some(b"7"), p)), "{name}");
        assert!(is_invalid(verify_proof(&root, b"acct/99", Some(b"x"), &absent.proof)), "{name}");
        assert!(is_invalid(verify_proof(&root, b"acct/7", Some(b"7"), &absent.proof)), "{name}");

        // Corrupted or oversized proof bytes are errors, never panics.
        let mut flipped = p.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(is_invalid(verify_proof(&root, b"acct/7", Some(b"7"), &flipped)), "{name}");
        assert!(is_invalid(verify_proof(&root, b"acct/7", Some(b"7"), &p[..p.len() - 1])));
        assert!(is_invalid(verify_proof(&root, b"acct/7", Some(b"7"), &[0xFF; 64])));
        let huge = vec![0u8; MAX_PROOF_BYTES + 1];
        assert!(is_invalid(verify_proof(&root, b"acct/7", Some(b"7"), &huge)));
    }
}

#[test]
fn old_heights_prove_against_their_own_roots() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        let r0 = commit(store, 0, &[put("a", "old"), put("b", "1")]);
        let r1 = commit(store, 1, &[put("a", "new")]);
        let old = store.prove_at(b"a", Height(0)).unwrap();
        assert_eq!(old.value.as_deref(), Some(&b"old"[..]), "{name}");
        old.verify(&r0, b"a").unwrap();
        assert!(is_invalid(old.verify(&r1, b"a")), "{name}");
        let new = store.prove(b"a").unwrap();
        assert_eq!(new.value.as_deref(), Some(&b"new"[..]), "{name}");
        new.verify(&r1, b"a").unwrap();
    }
}

#[test]
fn empty_states_prove_absence_and_empty_stores_have_nothing_to_prove() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        assert_eq!(
            store.prove(b"k").unwrap_err(),
            StorageError::Unavailable { height: Height(0) },
            "{name}"
        );
        commit(store, 0, &[]);
        let proof = store.prove(b"k").unwrap();
        assert_eq!(proof.value, None);
        proof.verify(&EMPTY_STATE_ROOT, b"k").unwrap();
        assert!(is_invalid(verify_proof(&EMPTY_STATE_ROOT, b"k", Some(b"v"), &proof.proof)));
    }
}
