//! Marketplace data: listings, provenance, escrow, API keys, usage batches.

use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Address, Amount, Hash, Height, Ppm};
use serde::{Deserialize, Serialize};

/// Longest listing name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest API-key label (characters).
pub const MAX_LABEL_LEN: usize = 64;

/// What kind of model a listing serves (and so which API the node exposes for it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A language model: `/v1/chat/completions`, `/v1/completions`.
    Language,
    /// A non-language model: `/v1/predict`.
    Predict,
}

/// The price of a listing. A call costs
/// `ceil((prompt + completion tokens) × per_1k_tokens / 1000) + calls × per_call`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Pricing {
    /// Price of 1,000 tokens (prompt and completion alike).
    pub per_1k_tokens: Amount,
    /// Price of one call.
    pub per_call: Amount,
}

/// How a listing's revenue is shared. The three parts sum to exactly 100%.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct RevenueSplit {
    /// The owner's part (it also receives the rounding dust and the validators' part when the
    /// listing has no provenance validators).
    pub owner: Ppm,
    /// Shared equally by the provenance validators.
    pub validators: Ppm,
    /// Burned.
    pub burn: Ppm,
}

impl RevenueSplit {
    /// Whether each part is a valid ratio and the parts sum to exactly 1,000,000 ppm.
    pub fn check(&self) -> Result<(), String> {
        for (name, p) in
            [("owner", self.owner), ("validators", self.validators), ("burn", self.burn)]
        {
            p.check().map_err(|e| format!("split.{name}: {e}"))?;
        }
        let sum = u64::from(self.owner.get())
            + u64::from(self.validators.get())
            + u64::from(self.burn.get());
        if sum != u64::from(Ppm::DENOM) {
            return Err(format!("split must sum to 1000000 ppm (100%), got {sum}"));
        }
        Ok(())
    }
}

/// Which product a model came out of.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Product {
    /// An AI Arena round's winning submission.
    Arena,
    /// An FL Alliance round's adopted model.
    Alliance,
}

/// What a lister claims: the round its model came from. The ledger checks it and fills in
/// the rest ([`Provenance`]) from its own records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ProvenanceClaim {
    /// The product.
    pub product: Product,
    /// The task.
    pub task: u64,
    /// The round.
    pub round: u32,
}

/// A listing's provenance, filled in by the ledger from a settled Arena round or a decided
/// and accepted Alliance round; nothing here is taken from the lister except the round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Provenance {
    /// The product.
    pub product: Product,
    /// The task.
    pub task: u64,
    /// The round.
    pub round: u32,
    /// Arena: the winning submission's consensus score; Alliance: the median score of the
    /// majority voters (fixed point, millionths).
    pub score: Option<u64>,
    /// Arena: the validators who revealed a score for the winning submission; Alliance: the
    /// voters rewarded in the round. Sorted by address; they share the validators' revenue.
    pub validators: Vec<Address>,
    /// The artifact the round produced (Arena: the winning submission; Alliance: the adopted
    /// aggregate), so a consumer can compare it with the listing's artifact.
    pub model: Option<Hash>,
}

/// What a lister asks for ([`crate::TxKind::MarketList`]).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ListingSpec {
    /// Unique id: 1..=64 characters of `[a-z0-9._-]`.
    pub name: String,
    /// The node account allowed to post usage for it.
    pub server: Address,
    /// The model bundle's artifact hash.
    pub artifact: Hash,
    /// What kind of model it is.
    pub kind: ModelKind,
    /// The price.
    pub price: Pricing,
    /// The revenue split.
    pub split: RevenueSplit,
    /// The round the model came from, if any.
    pub provenance: Option<ProvenanceClaim>,
}

/// A model on the marketplace.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Listing {
    /// Unique id: 1..=64 characters of `[a-z0-9._-]`.
    pub name: String,
    /// Who listed it and receives the owner's revenue.
    pub owner: Address,
    /// The node account allowed to post usage for it (the owner may change it).
    pub server: Address,
    /// The model bundle's artifact hash.
    pub artifact: Hash,
    /// What kind of model it is.
    pub kind: ModelKind,
    /// The price.
    pub price: Pricing,
    /// The revenue split (fixed at listing).
    pub split: RevenueSplit,
    /// Where the model came from, as the ledger recorded it.
    pub provenance: Option<Provenance>,
    /// Whether the node should serve it (usage already served can still be settled).
    pub active: bool,
    /// When it was listed.
    pub created: Height,
    /// Sum of the current ratings (stars).
    pub rating_sum: u64,
    /// Number of current ratings (one per consumer).
    pub rating_count: u64,
    /// Everything consumers have been charged for it.
    pub volume: Amount,
}

/// Changes to a listing ([`crate::TxKind::MarketUpdate`]); `None` leaves a field as it is.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ListingUpdate {
    /// A new price.
    pub price: Option<Pricing>,
    /// Serve it or not.
    pub active: Option<bool>,
    /// A new server account.
    pub server: Option<Address>,
}

impl ListingUpdate {
    /// Whether it changes nothing.
    pub const fn is_empty(&self) -> bool {
        self.price.is_none() && self.active.is_none() && self.server.is_none()
    }
}

/// A withdrawal on its way from the escrow back to the balance.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PendingWithdrawal {
    /// What is left of it (settlements may still draw on it until it is released).
    pub amount: Amount,
    /// The block at whose end it returns to the balance.
    pub release_at: Height,
}

/// A consumer's credit escrow.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Escrow {
    /// Credit the consumer can spend on new usage.
    pub available: Amount,
    /// Withdrawals not yet released, oldest first.
    pub pending: Vec<PendingWithdrawal>,
}

impl Escrow {
    /// Sum of the pending withdrawals.
    pub fn pending_total(&self) -> Amount {
        Amount(self.pending.iter().map(|p| p.amount.0).sum())
    }

    /// Everything held (available + pending).
    pub fn total(&self) -> Amount {
        Amount(self.available.0 + self.pending_total().0)
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.available.is_zero() && self.pending.is_empty()
    }
}

/// An API key, known to the ledger only by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ApiKey {
    /// The account its usage is charged to.
    pub owner: Address,
    /// A label for the owner.
    pub label: String,
    /// When it was bound.
    pub created: Height,
    /// When it was revoked (its hash stays bound forever).
    pub revoked: Option<Height>,
}

/// One API key's metered usage in a batch.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct UsageEntry {
    /// The key's hash.
    pub key_hash: Hash,
    /// Prompt tokens served.
    pub prompt_tokens: u64,
    /// Completion tokens served.
    pub completion_tokens: u64,
    /// Calls served.
    pub calls: u64,
}

/// Metered usage of one listing, posted by its server ([`crate::TxKind::MarketSettle`]).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct UsageBatch {
    /// The server's id for the batch; a batch id settles once per listing (retries are safe).
    pub id: Hash,
    /// The listing.
    pub listing: String,
    /// Usage per key (each key at most once; at most `market_max_batch_entries`).
    pub entries: Vec<UsageEntry>,
}

/// What one usage entry cost.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct UsageCharge {
    /// The key.
    pub key_hash: Hash,
    /// Its owner, who paid.
    pub consumer: Address,
    /// The price of the usage.
    pub cost: Amount,
    /// What the escrow paid (`cost − shortfall`).
    pub charged: Amount,
    /// What the escrow could not pay.
    pub shortfall: Amount,
}

/// A settled batch, kept so the same id is never charged twice.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SettledBatch {
    /// When it was settled.
    pub height: Height,
    /// The server that posted it.
    pub server: Address,
    /// Entries in it.
    pub entries: u32,
    /// Charged in total.
    pub charged: Amount,
    /// Unpaid in total.
    pub shortfall: Amount,
}

/// How a batch's revenue was shared.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct RevenueShares {
    /// To the owner (its part, the dust, and the validators' part when there are none).
    pub owner: Amount,
    /// To each provenance validator.
    pub per_validator: Amount,
    /// Burned.
    pub burn: Amount,
}

/// Whether `name` is a valid listing name: 1..=64 characters of `[a-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// The price of one entry's usage:
/// `ceil((prompt + completion) × per_1k_tokens / 1000) + calls × per_call`; `None` on overflow.
pub fn usage_cost(entry: &UsageEntry, price: &Pricing) -> Option<Amount> {
    let tokens = u128::from(entry.prompt_tokens) + u128::from(entry.completion_tokens);
    let by_tokens = flock_primitives::math::mul_div_ceil(tokens, price.per_1k_tokens.0, 1_000)?;
    let by_calls = u128::from(entry.calls).checked_mul(price.per_call.0)?;
    by_tokens.checked_add(by_calls).map(Amount)
}

/// Splits `charged` by `split` among `validators` provenance validators: the burn and the
/// validators' parts are rounded down, the validators' part is shared equally, and the owner
/// gets the rest (its part, the dust, and all of the validators' part when there are none).
pub fn split_revenue(charged: Amount, split: &RevenueSplit, validators: usize) -> RevenueShares {
    let burn = charged.mul_ppm(split.burn);
    let per_validator = if validators == 0 {
        Amount::ZERO
    } else {
        Amount(charged.mul_ppm(split.validators).0 / validators as u128)
    };
    let to_validators = per_validator.0 * validators as u128;
    // burn + validators' part ≤ charged because the parts sum to 100%.
    let owner = Amount(charged.0.saturating_sub(burn.0).saturating_sub(to_validators));
    RevenueShares { owner, per_validator, burn }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppm(p: u32) -> Ppm {
        Ppm::percent(p).unwrap()
    }

    #[test]
    fn names() {
        assert!(valid_name("llama-3.1_8b"));
        assert!(valid_name(&"a".repeat(64)));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(!valid_name("Upper"));
        assert!(!valid_name("sp ace"));
        assert!(!valid_name("slash/"));
        assert!(!valid_name("é"));
    }

    #[test]
    fn split_must_sum_to_one() {
        let s = RevenueSplit { owner: ppm(70), validators: ppm(20), burn: ppm(10) };
        assert!(s.check().is_ok());
        let s = RevenueSplit { owner: ppm(70), validators: ppm(20), burn: ppm(9) };
        assert!(s.check().is_err());
        let s = RevenueSplit { owner: Ppm::ONE, validators: Ppm::ONE, burn: Ppm::ZERO };
        assert!(s.check().is_err());
    }

    #[test]
    fn cost_rounds_tokens_up() {
        let price = Pricing { per_1k_tokens: Amount::flock(2), per_call: Amount(5) };
        let e = |p, c, n| UsageEntry {
            key_hash: Hash::ZERO,
            prompt_tokens: p,
            completion_tokens: c,
            calls: n,
        };
        // 1,234 tokens × 2 FLOCK / 1,000 = 2.468 FLOCK exactly.
        assert_eq!(usage_cost(&e(1_000, 234, 0), &price), Some(Amount(2_468_000_000_000_000_000)));
        // 1 token at 7 base units per 1k: 0.007 rounds up to 1 base unit.
        let cheap = Pricing { per_1k_tokens: Amount(7), per_call: Amount::ZERO };
        assert_eq!(usage_cost(&e(1, 0, 0), &cheap), Some(Amount(1)));
        assert_eq!(usage_cost(&e(0, 0, 3), &price), Some(Amount(15)));
        let huge = Pricing { per_1k_tokens: Amount(u128::MAX), per_call: Amount(u128::MAX) };
        assert_eq!(usage_cost(&e(0, 0, 2), &huge), None);
        assert_eq!(usage_cost(&e(u64::MAX, u64::MAX, 0), &huge), None);
    }

    #[test]
    fn split_shares_dust_with_the_owner() {
        let s = RevenueSplit { owner: ppm(70), validators: ppm(20), burn: ppm(10) };
        let r = split_revenue(Amount(1_000), &s, 3);
        // burn 100; validators 200 / 3 = 66 each (198); owner 700 + 2 dust.
        assert_eq!(
            r,
            RevenueShares { owner: Amount(702), per_validator: Amount(66), burn: Amount(100) }
        );
        let r = split_revenue(Amount(1_000), &s, 0);
        assert_eq!(
            r,
            RevenueShares { owner: Amount(900), per_validator: Amount::ZERO, burn: Amount(100) }
        );
        let r = split_revenue(Amount::ZERO, &s, 3);
        assert_eq!(r, RevenueShares::default());
    }
}
