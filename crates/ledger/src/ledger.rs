//! The state machine: `apply_block(state, block) -> (state', receipts)`.

use crate::{
    block::{tx_root, Block},
    emission::{epoch_ending_at, run_emission, EmissionSink},
    error::{BlockError, TxError},
    events::{BlockReceipts, Event, Receipt, TxStatus},
    genesis::{Genesis, GenesisError},
    params::Params,
    state::{Globals, State, StateChange, TargetInfo},
    tx::{SignedTx, StakeTarget, TxKind},
};
use flock_primitives::{verify_batch, Address, Amount, Hash, Height};
use std::sync::Arc;

/// The ledger: state plus the registered emission sinks.
///
/// Deterministic: no clock, no OS randomness, no floats, no unordered iteration. Time and
/// randomness come from the block header.
#[derive(Debug, Clone)]
pub struct Ledger {
    state: State,
    params: Params,
    sinks: Vec<Arc<dyn EmissionSink>>,
}

impl Ledger {
    /// The state at height 0 for `genesis`.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, GenesisError> {
        genesis.validate()?;
        let p = genesis.params.clone();
        let mut state = State::default();
        let hash = genesis.hash();
        state.globals.insert(
            (),
            Globals {
                chain_id: genesis.chain_id.clone(),
                height: Height::GENESIS,
                time_ms: genesis.genesis_time_ms,
                seed: hash,
                last_block_hash: hash,
                ..Globals::default()
            },
        );
        state.params.insert((), p.clone());
        state.register_target(
            StakeTarget::NETWORK,
            TargetInfo {
                min_stake: p.min_network_stake,
                unlock_at: Height(0),
                open: true,
                share_freeze: None,
                total_stake: Amount::ZERO,
            },
        );
        for t in &genesis.targets {
            state.register_target(
                t.target,
                TargetInfo {
                    min_stake: t.min_stake,
                    unlock_at: t.unlock_at,
                    open: true,
                    share_freeze: None,
                    total_stake: Amount::ZERO,
                },
            );
        }
        let mut minted = Amount::ZERO;
        for a in &genesis.allocations {
            state.credit(&a.address, a.amount).map_err(|_| GenesisError::OverCap(p.supply_cap))?;
            minted = Amount(minted.0 + a.amount.0);
        }
        state.update_globals(|g| g.minted = minted);
        state.clear_undo();
        Ok(Self { state, params: p, sinks: default_sinks() })
    }

    /// Rebuilds the ledger from stored state entries (restart).
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Self, String> {
        let mut state = State::default();
        for (k, v) in entries {
            state.load_entry(k, v)?;
        }
        let params = state.params.get(&()).cloned().ok_or("stored state has no params")?;
        if state.globals.get(&()).is_none() {
            return Err("stored state has no globals".into());
        }
        Ok(Self { state, params, sinks: default_sinks() })
    }

    /// Registers a product's emission sink (order matters and must be the same on every node).
    pub fn register_sink(&mut self, sink: Arc<dyn EmissionSink>) {
        self.sinks.push(sink);
    }

    /// Read access to the state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Write access to the state (products and tests).
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Chain counters.
    pub fn globals(&self) -> Globals {
        self.state.globals()
    }

    /// The height of the last applied block.
    pub fn height(&self) -> Height {
        self.state.globals().height
    }

    /// The chain id.
    pub fn chain_id(&self) -> String {
        self.state.globals().chain_id
    }

    /// The state changes since the last call (the block's write set for storage).
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        self.state.take_changes()
    }

    /// Checks a transaction for admission: stateless checks and the exact next nonce.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<(), TxError> {
        tx.check_stateless(&self.chain_id(), &self.params)?;
        self.check_nonce(tx)
    }

    fn check_nonce(&self, tx: &SignedTx) -> Result<(), TxError> {
        let account = tx.tx.sender();
        let expected = self.state.account(&account).nonce;
        match tx.tx.nonce.cmp(&expected) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => {
                Err(TxError::NonceReplayed { account, expected, got: tx.tx.nonce })
            }
            std::cmp::Ordering::Greater => {
                Err(TxError::NonceGap { account, expected, got: tx.tx.nonce })
            }
        }
    }

    /// Applies one transaction on top of the current state as if in the next block (mempool
    /// admission against pending state). On error nothing changes — not even the nonce.
    pub fn apply_pending_tx(&mut self, tx: &SignedTx) -> Result<Vec<Event>, TxError> {
        self.check_tx(tx)?;
        let now = self.height().next();
        let cp = self.state.checkpoint();
        self.bump_nonce(tx);
        let mut events = Vec::new();
        match self.execute(tx, now, &mut events) {
            Ok(()) => {
                self.state.clear_undo();
                Ok(events)
            }
            Err(e) => {
                self.state.rollback(cp);
                Err(e)
            }
        }
    }

    fn bump_nonce(&mut self, tx: &SignedTx) {
        let sender = tx.tx.sender();
        let mut acc = self.state.account(&sender);
        acc.nonce += 1;
        self.state.put_account(sender, acc);
    }

    /// Applies a finalized block. On error the state is exactly as before.
    pub fn apply_block(&mut self, block: &Block) -> Result<BlockReceipts, BlockError> {
        let cp = self.state.checkpoint();
        match self.apply_block_inner(block) {
            Ok(r) => {
                self.state.clear_undo();
                Ok(r)
            }
            Err(e) => {
                self.state.rollback(cp);
                self.state.clear_undo();
                Err(e)
            }
        }
    }

    /// Header and signature checks that need no execution.
    pub fn verify_block(&self, block: &Block) -> Result<(), BlockError> {
        let g = self.state.globals();
        let h = &block.header;
        if h.chain_id != g.chain_id {
            return Err(BlockError::WrongChainId { expected: g.chain_id, got: h.chain_id.clone() });
        }
        if h.height != g.height.next() {
            return Err(BlockError::WrongHeight { expected: g.height.0 + 1, got: h.height.0 });
        }
        if h.parent_hash != g.last_block_hash {
            return Err(BlockError::WrongParent {
                expected: g.last_block_hash,
                got: h.parent_hash,
            });
        }
        if h.time_ms < g.time_ms {
            return Err(BlockError::TimeWentBack { parent: g.time_ms, got: h.time_ms });
        }
        if block.txs.len() > self.params.max_block_txs as usize {
            return Err(BlockError::TooManyTxs {
                got: block.txs.len(),
                max: self.params.max_block_txs as usize,
            });
        }
        let evidence = block
            .txs
            .iter()
            .filter(|t| matches!(t.tx.kind, TxKind::ConsensusEvidence { .. }))
            .count();
        let max = crate::consensus::MAX_EVIDENCE_PER_BLOCK;
        if evidence > max {
            return Err(BlockError::TooMuchEvidence { got: evidence, max });
        }
        let encoded: Vec<Vec<u8>> = block.txs.iter().map(SignedTx::encode).collect();
        let hashes: Vec<Hash> = encoded.iter().map(|b| Hash::of(b)).collect();
        if tx_root(&hashes) != h.tx_root {
            return Err(BlockError::BadTxRoot);
        }
        let max = self.params.max_tx_bytes as usize;
        for (index, (tx, bytes)) in block.txs.iter().zip(&encoded).enumerate() {
            if bytes.len() > max {
                let error = TxError::TooLarge { size: bytes.len(), max };
                return Err(BlockError::InvalidTx { index, error });
            }
            tx.check_stateless_no_sig(&g.chain_id)
                .map_err(|error| BlockError::InvalidTx { index, error })?;
        }
        let msgs: Vec<Vec<u8>> = block.txs.iter().map(|t| t.tx.signing_bytes()).collect();
        let items: Vec<_> = block
            .txs
            .iter()
            .zip(&msgs)
            .map(|(t, m)| (&t.tx.signer, m.as_slice(), &t.signature))
            .collect();
        if verify_batch(&items).is_err() {
            // Find the culprit for a precise error.
            for (index, (pk, m, s)) in items.iter().enumerate() {
                if pk.verify(m, s).is_err() {
                    return Err(BlockError::InvalidTx { index, error: TxError::BadSignature });
                }
            }
        }
        Ok(())
    }

    fn apply_block_inner(&mut self, block: &Block) -> Result<BlockReceipts, BlockError> {
        self.verify_block(block)?;
        let h = &block.header;
        let now = h.height;
        let block_hash = block.hash();
        self.state.update_globals(|g| {
            g.height = now;
            g.time_ms = h.time_ms;
            g.seed = h.seed;
            g.last_block_hash = block_hash;
        });
        let mut receipts = BlockReceipts::default();
        self.state.release_unbonded(now, &mut receipts.begin).map_err(internal)?;
        self.state.arena_begin_block(now, h.seed, &mut receipts.begin);
        self.state
            .alliance_begin_block(now, h.seed, &self.params, &mut receipts.begin)
            .map_err(internal)?;
        for (index, tx) in block.txs.iter().enumerate() {
            self.check_nonce(tx).map_err(|error| BlockError::InvalidTx { index, error })?;
            self.bump_nonce(tx);
            let cp = self.state.checkpoint();
            let mut events = Vec::new();
            let status = match self.execute(tx, now, &mut events) {
                Ok(()) => TxStatus::Ok,
                Err(e) if e.is_internal() => return Err(internal(e)),
                Err(e) => {
                    self.state.rollback(cp);
                    events.clear();
                    TxStatus::Failed { code: e.code().to_owned(), message: e.to_string() }
                }
            };
            receipts.txs.push(Receipt {
                tx_hash: tx.hash(),
                sender: tx.tx.sender(),
                status,
                events,
            });
        }
        self.state.arena_end_block(now, &self.params, &mut receipts.end).map_err(internal)?;
        self.state.alliance_end_block(now, &self.params, &mut receipts.end).map_err(internal)?;
        self.state.market_end_block(now, &mut receipts.end).map_err(internal)?;
        if let Some(epoch) = epoch_ending_at(&self.params, now) {
            run_emission(&mut self.state, &self.params, &self.sinks, epoch, now, &mut receipts.end)
                .map_err(internal)?;
            self.state.record_validator_set(epoch.0 + 1, &self.params);
        }
        Ok(receipts)
    }

    fn execute(&mut self, tx: &SignedTx, now: Height, ev: &mut Vec<Event>) -> Result<(), TxError> {
        let sender: Address = tx.tx.sender();
        let p = &self.params;
        let s = &mut self.state;
        match &tx.tx.kind {
            TxKind::Transfer { to, amount } => s.transfer(&sender, to, *amount, ev),
            TxKind::Burn { amount } => s.burn_from(&sender, *amount, ev),
            TxKind::Stake { target, amount } => s.stake(&sender, *target, *amount, ev),
            TxKind::Unstake { target, amount } => s.unstake(&sender, *target, *amount, now, p, ev),
            TxKind::Delegate { operator, amount } => {
                s.delegate(&sender, operator, *amount, now, p, ev)
            }
            TxKind::Undelegate { operator, amount } => {
                s.undelegate(&sender, operator, *amount, now, p, ev)
            }
            TxKind::SetShare { share } => s.set_share(&sender, *share, now, p, ev),
            TxKind::Claim { from } => s.claim(&sender, *from, now, p, ev).map(|_| ()),
            TxKind::ArenaCreate { spec } => s.arena_create(&sender, spec, now, p, ev).map(|_| ()),
            TxKind::ArenaCommit { task, commitment } => {
                s.arena_commit(&sender, *task, *commitment, now, ev)
            }
            TxKind::ArenaReveal { task, artifact, salt } => {
                s.arena_reveal(&sender, *task, *artifact, *salt, now, ev).map(|_| ())
            }
            TxKind::ArenaRevealValidation { task, set_hash, salt } => {
                s.arena_reveal_validation(&sender, *task, *set_hash, *salt, now, ev)
            }
            TxKind::ArenaScoreCommit { task, submission, commitment } => {
                s.arena_score_commit(&sender, *task, *submission, *commitment, now, ev)
            }
            TxKind::ArenaScoreReveal { task, submission, score, salt } => {
                s.arena_score_reveal(&sender, *task, *submission, *score, *salt, now, ev)
            }
            TxKind::AllianceCreate { spec } => {
                s.alliance_create(&sender, spec, now, p, ev).map(|_| ())
            }
            TxKind::AllianceJoin { task, amount } => {
                s.alliance_join(&sender, *task, *amount, now, ev)
            }
            TxKind::AlliancePropose { task, update } => {
                s.alliance_propose(&sender, *task, *update, now, ev)
            }
            TxKind::AllianceVoteCommit { task, commitment } => {
                s.alliance_vote_commit(&sender, *task, *commitment, now, ev)
            }
            TxKind::AllianceVoteReveal { task, vote, salt } => {
                s.alliance_vote_reveal(&sender, *task, vote, *salt, now, ev)
            }
            TxKind::AllianceMaskKey { task, key } => {
                s.alliance_mask_key(&sender, *task, *key, now, ev)
            }
            TxKind::AllianceUnmask { task, reveals } => {
                s.alliance_unmask(&sender, *task, reveals, now, ev)
            }
            TxKind::ConsensusEvidence { fault } => s.consensus_evidence(&sender, fault, now, p, ev),
            TxKind::ConsensusRegister { endpoint } => {
                s.consensus_register(&sender, tx.tx.signer, endpoint, now)
            }
            TxKind::DkgLog { round, log } => s.dkg_log(&sender, *round, log, now, p),
            TxKind::MarketList { spec } => s.market_list(&sender, spec, now, ev),
            TxKind::MarketUpdate { name, price, active, server } => {
                let update = crate::market::ListingUpdate {
                    price: *price,
                    active: *active,
                    server: *server,
                };
                s.market_update(&sender, name, &update, ev)
            }
            TxKind::MarketDeposit { amount } => s.market_deposit(&sender, *amount, ev),
            TxKind::MarketWithdraw { amount } => s.market_withdraw(&sender, *amount, now, p, ev),
            TxKind::MarketKeyCreate { key_hash, label } => {
                s.market_key_create(&sender, *key_hash, label, now, p, ev)
            }
            TxKind::MarketKeyRevoke { key_hash } => {
                s.market_key_revoke(&sender, *key_hash, now, ev)
            }
            TxKind::MarketSettle { batch } => s.market_settle(&sender, batch, now, p, ev),
            TxKind::MarketRate { listing, stars } => s.market_rate(&sender, listing, *stars, ev),
        }
    }
}

/// The products that share the emission, in a fixed order (every node must agree on it).
fn default_sinks() -> Vec<Arc<dyn EmissionSink>> {
    vec![Arc::new(crate::alliance::AllianceSink), Arc::new(crate::arena::ArenaSink)]
}

fn internal(e: TxError) -> BlockError {
    match e {
        TxError::Internal(m) => BlockError::Internal(m),
        _ => BlockError::Internal("unexpected error outside a transaction"),
    }
}
