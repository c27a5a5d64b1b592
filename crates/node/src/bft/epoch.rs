//! Committees that follow staking: a threshold-key resharing per ledger epoch.
//!
//! ```text
//!  epoch r (blocks rL+1 ..= (r+1)L)                         epoch r+1
//!  ├─ start: players = the ledger's validator set of epoch r (network stakes at the end of
//!  │         r-1, members with a registered consensus key); dealers = committee r
//!  ├─ dealers send each player its share (Wire::Deal, private, on the block channel);
//!  │  players check it against the dealer's commitment and ack (Wire::Ack)
//!  ├─ each dealer posts its signed log on chain (TxKind::DkgLog) once every player acked,
//!  │  or at mid-epoch with the missing shares revealed
//!  └─ block (r+1)L commits: every node reads the logs of round r from the ledger and
//!     computes the same outcome: the new public sharing (same group key) and, for a
//!     player, its share ─► committee r+1 (or committee r again if too few logs landed)
//! ```
//!
//! The last block of an epoch is re-proposed by later leaders of that epoch until it is
//! finalized; the next epoch's engine starts on it as its genesis payload. The first block of
//! an epoch carries a seed derived from the last block's (threshold-VRF) seed.
//!
//! Everything here is a function of the chain (the ledger's recorded validator sets and
//! dealer logs), so a restarted node recomputes every committee; only its own shares are
//! secrets, kept in the data directory.

use super::{proposer_address, Scheme, ValidatorKey};
use commonware_codec::{Decode as _, Encode, Read};
use commonware_cryptography::{
    bls12381::{
        dkg::feldman_desmedt as fd,
        primitives::{
            group::Share,
            sharing::{Mode, ModeVersion},
            variant::MinSig,
        },
    },
    ed25519,
};
use commonware_parallel::Sequential;
use commonware_utils::{ordered::Set, N3f1};
use flock_ledger::consensus::SetMember;
use flock_primitives::{Address, Hash};
use std::{collections::BTreeSet, num::NonZeroU32, path::PathBuf};

/// The public outcome of a dealing: the committee (its players) and its public sharing.
pub type Output = fd::Output<MinSig, ValidatorKey>;
/// One resharing round's parameters.
pub type Info = fd::Info<MinSig, ValidatorKey>;
/// A dealer's public commitment.
pub type PubMsg = fd::DealerPubMsg<MinSig>;
/// A player's acknowledgement of a dealing.
pub type Ack = fd::PlayerAck<ValidatorKey>;
/// A dealer's signed log.
pub type SignedLog = fd::SignedDealerLog<MinSig, ValidatorKey>;

/// Largest committee (and largest encoded DKG message accepted).
pub const MAX_COMMITTEE: u32 = 1_024;

fn max() -> NonZeroU32 {
    NonZeroU32::new(MAX_COMMITTEE).expect("nonzero")
}

/// Decodes a whole commonware value from `bytes`.
fn dec<T: Read>(bytes: &[u8], cfg: &T::Cfg) -> Result<T, commonware_codec::Error> {
    T::decode_cfg(commonware_codec::Copying(bytes), cfg)
}

/// Decodes an encoded DKG output (as in a committee file).
pub fn decode_output(bytes: &[u8]) -> Result<Output, String> {
    dec::<Output>(bytes, &(max(), ModeVersion::v0())).map_err(|e| e.to_string())
}

/// The committee of one epoch: its dealing's output and this validator's share of it.
#[derive(Clone, Debug)]
pub struct EpochCommittee {
    /// The round that dealt it (none: the genesis dealing).
    pub round: Option<u64>,
    /// The dealing's public output.
    pub output: Output,
    /// This validator's share (none: not a member, or its share was lost).
    pub share: Option<Share>,
}

impl EpochCommittee {
    /// The members' identity keys (committee order).
    pub fn members(&self) -> &Set<ValidatorKey> {
        self.output.players()
    }

    /// The signing scheme: a signer with a share, a verifier (an observer) without.
    pub fn scheme(&self, namespace: &[u8]) -> Scheme {
        let set = self.output.players().clone();
        let public = self.output.public().clone();
        self.share
            .as_ref()
            .and_then(|s| Scheme::signer(namespace, set.clone(), public.clone(), s.clone()))
            .unwrap_or_else(|| Scheme::verifier(namespace, set, public))
    }
}

/// The consensus keys of a recorded validator set's members that registered one.
pub fn players_of(set: &[SetMember]) -> Vec<ValidatorKey> {
    let mut keys: Vec<ValidatorKey> = set
        .iter()
        .filter_map(|m| m.key)
        .filter_map(|k| dec::<ValidatorKey>(&k.0[..], &()).ok())
        .collect();
    keys.sort();
    keys.dedup();
    keys.truncate(MAX_COMMITTEE as usize);
    keys
}

/// The parameters of round `round`: the current committee deals to `players`.
pub fn round_info(
    namespace: &[u8],
    round: u64,
    current: &Output,
    players: &[ValidatorKey],
) -> Option<Info> {
    if players.is_empty() {
        return None;
    }
    let players = Set::from_iter_dedup(players.iter().cloned());
    fd::Info::new::<N3f1>(
        namespace,
        round,
        Some(current.clone()),
        Mode::NonZeroCounter,
        fd::Reveal::V1,
        current.players().clone(),
        players,
    )
    .ok()
}

/// Checks a dealer log posted by `sender` for round `info`: it decodes, its signature holds,
/// its dealer is one of the round's and is the sender.
pub fn check_log(info: &Info, sender: &Address, bytes: &[u8]) -> Result<(), String> {
    let signed =
        dec::<SignedLog>(bytes, &max()).map_err(|e| format!("dealer log does not decode: {e}"))?;
    let (dealer, _) = signed
        .check(info)
        .ok_or_else(|| "dealer log is not signed by a dealer of this round".to_string())?;
    if proposer_address(&dealer) != *sender {
        return Err("a dealer log must be posted by its dealer".into());
    }
    Ok(())
}

fn logs_of(info: &Info, logs: &[(Address, Vec<u8>)]) -> fd::Logs<MinSig, ValidatorKey, N3f1> {
    let mut out = fd::Logs::new(info.clone());
    for (sender, bytes) in logs {
        let Ok(signed) = dec::<SignedLog>(bytes, &max()) else { continue };
        let Some((dealer, log)) = signed.check(info) else { continue };
        if proposer_address(&dealer) == *sender {
            out.record(dealer, log);
        }
    }
    out
}

/// Decides round `info` from the dealer logs that landed on chain: the new output and, for a
/// player that took part, its share. Every node computes the same output from the same logs.
pub fn decide(
    rng: &mut impl rand_core_cw::CryptoRng,
    info: &Info,
    logs: &[(Address, Vec<u8>)],
    player: Option<Player>,
) -> Result<(Output, Option<Share>), String> {
    if let Some(player) = player {
        match player.finalize::<N3f1>(rng, logs_of(info, logs), &Sequential) {
            Ok((output, share)) => return Ok((output, Some(share))),
            Err(fd::FinalizeError::Failure(f)) => return Err(format!("{f:?}")),
            // Our own dealings are incomplete (a restart): the round may still have succeeded.
            Err(fd::FinalizeError::Error(e)) => {
                tracing::warn!(error = ?e, "this player's dealings are incomplete; observing only")
            }
        }
    }
    fd::observe::<MinSig, ValidatorKey, N3f1>(rng, logs_of(info, logs), &Sequential)
        .map(|o| (o, None))
        .map_err(|f| format!("{f:?}"))
}

/// A player's state in a round.
pub type Player = fd::Player<MinSig, ed25519::PrivateKey>;
/// A dealer's state in a round.
pub type Dealer = fd::Dealer<MinSig, ed25519::PrivateKey>;

/// This validator's part in the running round.
pub struct DkgRound {
    /// The round (the ledger epoch it runs in).
    pub round: u64,
    /// Its parameters.
    pub info: Info,
    /// Our dealing, when we are a dealer.
    pub dealer: Option<DealerSide>,
    /// Our player state, when we are a player.
    pub player: Option<Player>,
    /// Acks we sent, by dealer (sent again when a dealer repeats its dealing).
    pub acks: std::collections::BTreeMap<ValidatorKey, Ack>,
}

/// A dealer's progress.
pub struct DealerSide {
    /// The dealer (until its log is signed).
    pub dealer: Option<Dealer>,
    /// Its public commitment.
    pub public: PubMsg,
    /// The private share of each player.
    pub private: Vec<(ValidatorKey, fd::DealerPrivMsg)>,
    /// Players that acked.
    pub acked: BTreeSet<ValidatorKey>,
    /// The signed log, once finalized.
    pub log: Option<Vec<u8>>,
    /// Height of the last submission of the log.
    pub submitted: Option<u64>,
    /// When the dealing was last sent.
    pub sent: Option<std::time::SystemTime>,
}

/// A dealer's randomness for `round`: seeded from its identity secret and the round, so a
/// dealer that restarts mid-round deals exactly the same again (players that acked its first
/// dealing ack the repeat instead of refusing it, and no share is revealed for nothing).
/// Round numbers are never reused, so no two dealings share randomness.
pub fn dealer_rng(identity: &ed25519::PrivateKey, round: u64) -> rand_chacha_cw::ChaCha20Rng {
    use rand_chacha_cw::rand_core::SeedableRng as _;
    let secret = identity.encode();
    let seed = Hash::of_parts("flock dkg dealer v1", &[secret.as_ref(), &round.to_le_bytes()]);
    rand_chacha_cw::ChaCha20Rng::from_seed(seed.0)
}

impl DkgRound {
    /// Our part in `info` (dealer with `share` from the current committee, and/or player).
    pub fn start(
        round: u64,
        info: Info,
        identity: &ed25519::PrivateKey,
        share: Option<Share>,
        dealt_already: bool,
    ) -> Self {
        use commonware_cryptography::Signer as _;
        let me = identity.public_key();
        let dealer = (!dealt_already && share.is_some())
            .then(|| {
                let rng = dealer_rng(identity, round);
                fd::Dealer::start::<N3f1>(rng, info.clone(), identity.clone(), share)
            })
            .and_then(|r| match r {
                Ok((dealer, public, private)) => Some(DealerSide {
                    dealer: Some(dealer),
                    public,
                    private,
                    acked: BTreeSet::new(),
                    log: None,
                    submitted: None,
                    sent: None,
                }),
                Err(e) => {
                    tracing::debug!(error = ?e, round, "not a dealer of this round");
                    None
                }
            });
        let player = fd::Player::new(info.clone(), identity.clone()).ok();
        tracing::info!(
            round,
            dealer = dealer.is_some(),
            player = player.is_some(),
            me = %proposer_address(&me),
            "resharing round started"
        );
        Self { round, info, dealer, player, acks: Default::default() }
    }
}

/// Encodes a public commitment, a private share or an ack for the wire.
pub fn enc<T: Encode>(v: &T) -> Vec<u8> {
    v.encode().to_vec()
}

/// Decodes a dealer's public commitment.
pub fn dec_pub(bytes: &[u8]) -> Option<PubMsg> {
    dec::<PubMsg>(bytes, &max()).ok()
}

/// Decodes a private share.
pub fn dec_priv(bytes: &[u8]) -> Option<fd::DealerPrivMsg> {
    dec::<fd::DealerPrivMsg>(bytes, &()).ok()
}

/// Decodes an ack.
pub fn dec_ack(bytes: &[u8]) -> Option<Ack> {
    dec::<Ack>(bytes, &()).ok()
}

/// Where this validator keeps the shares it received (`None`: in memory only).
#[derive(Debug, Clone)]
pub struct ShareStore(pub Option<PathBuf>);

impl ShareStore {
    fn path(&self, round: u64) -> Option<PathBuf> {
        self.0.as_ref().map(|d| d.join(format!("dkg-share-round-{round}.hex")))
    }

    /// Keeps the share of `round` (owner-only permissions on unix).
    pub fn save(&self, round: u64, share: &Share) {
        let Some(path) = self.path(round) else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, hex::encode(share.encode()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            tracing::error!(error = %e, path = %path.display(), "could not save a threshold share");
        }
    }

    /// The share of `round`, if kept.
    pub fn load(&self, round: u64) -> Option<Share> {
        let text = std::fs::read_to_string(self.path(round)?).ok()?;
        let bytes = hex::decode(text.trim()).ok()?;
        dec::<Share>(&bytes, &()).ok()
    }

    /// Deletes the shares of rounds before `round` (a committee that was re-dealt no longer
    /// signs; an old share kept is only a liability: a quorum of old shares still signs under
    /// the group key).
    pub fn prune_before(&self, round: u64) {
        let Some(dir) = self.0.as_ref() else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let old = name
                .to_str()
                .and_then(|n| n.strip_prefix("dkg-share-round-")?.strip_suffix(".hex"))
                .and_then(|r| r.parse::<u64>().ok())
                .is_some_and(|r| r < round);
            if old {
                if let Err(err) = std::fs::remove_file(e.path()) {
                    tracing::warn!(error = %err, path = %e.path().display(), "could not delete an old share");
                }
            }
        }
    }
}

/// The seed of an epoch's first block: derived from the threshold-VRF seed in the header of
/// the previous epoch's last block.
pub fn epoch_seed(epoch: u64, last_seed: &Hash) -> Hash {
    Hash::of_parts("flock bft epoch seed v1", &[&epoch.to_le_bytes(), &last_seed.0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four identities and a trusted dealing to them.
    fn genesis_dealing(
    ) -> (Vec<ed25519::PrivateKey>, Output, commonware_utils::ordered::Map<ValidatorKey, Share>)
    {
        use commonware_cryptography::bls12381::{
            dkg::feldman_desmedt::deal, primitives::sharing::Mode,
        };
        use commonware_cryptography::Signer as _;
        let keys: Vec<_> = (0..4).map(ed25519::PrivateKey::from_seed).collect();
        let set = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
        let (output, shares) =
            deal::<MinSig, _, N3f1>(commonware_utils::test_rng(), Mode::NonZeroCounter, set)
                .unwrap();
        (keys, output, shares)
    }

    #[test]
    fn shares_are_kept_per_round_and_old_ones_deleted() {
        let (_, _, shares) = genesis_dealing();
        let share = shares.values()[0].clone();
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore(Some(dir.path().join("shares")));
        assert!(store.load(1).is_none());
        store.save(1, &share);
        store.save(2, &share);
        assert_eq!(store.load(1), Some(share.clone()));
        store.prune_before(2);
        assert!(store.load(1).is_none(), "an old round's share is deleted");
        assert_eq!(store.load(2), Some(share));
        // In memory only: nothing kept, nothing fails.
        let none = ShareStore(None);
        none.save(3, &shares.values()[1]);
        assert!(none.load(3).is_none());
        none.prune_before(9);
    }

    #[test]
    fn a_restarted_dealer_deals_the_same_again() {
        use commonware_cryptography::Signer as _;
        let (keys, output, shares) = genesis_dealing();
        let players: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
        let info = round_info(b"ns", 3, &output, &players).unwrap();
        let me = &keys[0];
        let share = shares.get_value(&me.public_key()).cloned();
        let dealing = |round| {
            let r = DkgRound::start(round, info.clone(), me, share.clone(), false);
            let d = r.dealer.expect("a dealer of the round");
            (enc(&d.public), d.private.iter().map(|(p, m)| (p.clone(), enc(m))).collect::<Vec<_>>())
        };
        assert_eq!(dealing(3), dealing(3), "a restart deals the same commitment and shares");
        assert_ne!(dealing(3).0, dealing(4).0, "another round, other randomness");
        // Having posted its log already, it does not deal again.
        assert!(DkgRound::start(3, info.clone(), me, share, true).dealer.is_none());
    }
}
