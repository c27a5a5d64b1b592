//! Consensus faults the engine reports, turned into ledger evidence, and the check of such
//! evidence's proof (the engine's signatures, which the ledger never sees through).
//!
//! ```text
//!   engine batcher: two votes of one signer in one view disagree ─► Activity::Conflicting*
//!     ─► fault_of: ConsensusFault { offender key, kind, epoch, view, proof = encoded votes }
//!     ─► TxKind::ConsensusEvidence signed by this validator's identity key ─► mempool
//!   any block carrying evidence: verify_fault (decode, signer = offender, epoch/view match,
//!     both signatures verify) or the block is rejected; then the ledger slashes and tombstones
//! ```

use super::{Digest, Scheme, ValidatorKey};
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::{
    simplex::types::{
        Activity, Attributable, ConflictingFinalize, ConflictingNotarize, NullifyFinalize,
    },
    types::Epoch,
    Epochable, Viewable,
};
use flock_ledger::consensus::{ConsensusFault, FaultKind, MAX_FAULT_PROOF_BYTES};
use flock_primitives::PublicKey;

/// The flock public key of a consensus identity key (the same ed25519 key).
pub fn flock_key(key: &ValidatorKey) -> PublicKey {
    let mut pk = [0u8; 32];
    pk.copy_from_slice(key.as_ref());
    PublicKey(pk)
}

/// The ledger evidence of an attributable fault the engine reported (`None` for other
/// activity, or a signer outside the committee).
pub fn fault_of(scheme: &Scheme, activity: &Activity<Scheme, Digest>) -> Option<ConsensusFault> {
    let (kind, signer, epoch, view, proof) = match activity {
        Activity::ConflictingNotarize(c) => {
            (FaultKind::ConflictingNotarize, c.signer(), c.epoch(), c.view(), c.encode())
        }
        Activity::ConflictingFinalize(c) => {
            (FaultKind::ConflictingFinalize, c.signer(), c.epoch(), c.view(), c.encode())
        }
        Activity::NullifyFinalize(c) => {
            (FaultKind::NullifyFinalize, c.signer(), c.epoch(), c.view(), c.encode())
        }
        _ => return None,
    };
    let key = scheme.participants().get(usize::from(signer))?;
    Some(ConsensusFault {
        offender: flock_key(key),
        kind,
        epoch: epoch.get(),
        view: view.get(),
        proof: proof.to_vec(),
    })
}

/// Checks evidence against the committee of `epoch`: the proof decodes as the named kind of
/// fault, its signer is the named offender, its epoch and view are the named ones, and both
/// signed votes verify.
pub fn verify_fault(scheme: &Scheme, epoch: Epoch, f: &ConsensusFault) -> Result<(), String> {
    if f.proof.is_empty() || f.proof.len() > MAX_FAULT_PROOF_BYTES {
        return Err(format!("the proof must be 1 to {MAX_FAULT_PROOF_BYTES} bytes"));
    }
    if f.epoch != epoch.get() {
        return Err(format!(
            "the evidence is for consensus epoch {}; this committee signs epoch {}",
            f.epoch,
            epoch.get()
        ));
    }
    let bytes = commonware_codec::Copying(f.proof.as_slice());
    let mut rng = commonware_utils::sys_rng();
    let strategy = commonware_parallel::Sequential;
    let decode_err =
        |e: commonware_codec::Error| format!("the proof does not decode as {}: {e}", f.kind);
    let (signer, e, v, valid) = match f.kind {
        FaultKind::ConflictingNotarize => {
            let c = ConflictingNotarize::<Scheme, Digest>::decode(bytes).map_err(decode_err)?;
            (c.signer(), c.epoch(), c.view(), c.verify(&mut rng, scheme, &strategy))
        }
        FaultKind::ConflictingFinalize => {
            let c = ConflictingFinalize::<Scheme, Digest>::decode(bytes).map_err(decode_err)?;
            (c.signer(), c.epoch(), c.view(), c.verify(&mut rng, scheme, &strategy))
        }
        FaultKind::NullifyFinalize => {
            let c = NullifyFinalize::<Scheme, Digest>::decode(bytes).map_err(decode_err)?;
            (c.signer(), c.epoch(), c.view(), c.verify(&mut rng, scheme, &strategy))
        }
    };
    let Some(key) = scheme.participants().get(usize::from(signer)) else {
        return Err(format!("the proof's signer {} is not in the committee", signer.get()));
    };
    if flock_key(key) != f.offender {
        return Err("the proof is signed by another validator than the offender named".into());
    }
    if e.get() != f.epoch || v.get() != f.view {
        return Err(format!(
            "the proof is for epoch {} view {}, the evidence names epoch {} view {}",
            e.get(),
            v.get(),
            f.epoch,
            f.view
        ));
    }
    if !valid {
        return Err("a signature in the proof does not verify".into());
    }
    Ok(())
}
