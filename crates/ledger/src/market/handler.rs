//! Marketplace transactions other than settlement: listings, API keys, ratings; read helpers.

use super::types::*;
use crate::{error::TxError, events::Event, params::Params, state::State};
use flock_primitives::{Address, Amount, Hash, Height};

const ADDR_MIN: Address = Address([0; 20]);
const ADDR_MAX: Address = Address([0xff; 20]);
const HASH_MAX: Hash = Hash([0xff; 32]);

impl State {
    /// The listing called `name`.
    pub fn market_listing(&self, name: &str) -> Option<Listing> {
        self.market_listings.get(&name.to_owned()).cloned()
    }

    /// Every listing, by name.
    pub fn market_all_listings(&self) -> Vec<Listing> {
        self.market_listings.iter().map(|(_, l)| l.clone()).collect()
    }

    fn listing_or_err(&self, name: &str) -> Result<Listing, TxError> {
        self.market_listing(name).ok_or_else(|| TxError::UnknownListing(name.to_owned()))
    }

    /// The API key bound to `key_hash`.
    pub fn market_key(&self, key_hash: &Hash) -> Option<ApiKey> {
        self.market_keys.get(key_hash).cloned()
    }

    /// The account `key_hash` is bound to (revoked keys included).
    pub fn market_key_owner(&self, key_hash: &Hash) -> Option<Address> {
        self.market_keys.get(key_hash).map(|k| k.owner)
    }

    /// The keys bound to `owner`, revoked ones included, by hash.
    pub fn market_keys_of(&self, owner: &Address) -> Vec<(Hash, ApiKey)> {
        self.market_account_keys
            .range((*owner, Hash::ZERO)..=(*owner, HASH_MAX))
            .filter_map(|((_, h), _)| self.market_key(h).map(|k| (*h, k)))
            .collect()
    }

    /// The ratings of a listing: `(consumer, stars)` by consumer.
    pub fn market_ratings(&self, listing: &str) -> Vec<(Address, u8)> {
        let name = listing.to_owned();
        self.market_ratings
            .range((name.clone(), ADDR_MIN)..=(name, ADDR_MAX))
            .map(|((_, a), s)| (*a, *s))
            .collect()
    }

    /// What `consumer` has been charged for `listing` in total.
    pub fn market_spent(&self, listing: &str, consumer: &Address) -> Amount {
        self.market_spent.get(&(listing.to_owned(), *consumer)).copied().unwrap_or_default()
    }

    /// The record of batch `id` of `listing`, if it was settled.
    pub fn market_batch(&self, listing: &str, id: &Hash) -> Option<SettledBatch> {
        self.market_batches.get(&(listing.to_owned(), *id)).cloned()
    }

    /// Whether batch `id` of `listing` was settled.
    pub fn market_batch_settled(&self, listing: &str, id: &Hash) -> bool {
        self.market_batches.contains(&(listing.to_owned(), *id))
    }

    /// Lists a model; the sender becomes its owner.
    pub fn market_list(
        &mut self,
        owner: &Address,
        spec: &ListingSpec,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if !valid_name(&spec.name) {
            return Err(TxError::InvalidListing(format!(
                "name {:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '.', '_', '-'",
                spec.name
            )));
        }
        spec.split.check().map_err(TxError::InvalidListing)?;
        if self.market_listings.contains(&spec.name) {
            return Err(TxError::ListingExists(spec.name.clone()));
        }
        let provenance = match &spec.provenance {
            Some(claim) => Some(self.market_provenance(owner, claim)?),
            None => None,
        };
        let listing = Listing {
            name: spec.name.clone(),
            owner: *owner,
            server: spec.server,
            artifact: spec.artifact,
            kind: spec.kind,
            price: spec.price,
            split: spec.split,
            provenance: provenance.clone(),
            active: true,
            created: now,
            rating_sum: 0,
            rating_count: 0,
            volume: Amount::ZERO,
        };
        ev.push(Event::MarketListed {
            name: spec.name.clone(),
            owner: *owner,
            server: spec.server,
            artifact: spec.artifact,
            price: spec.price,
            provenance,
        });
        self.market_listings.insert(spec.name.clone(), listing);
        Ok(())
    }

    /// Changes the price, the active flag or the server of a listing (owner only).
    pub fn market_update(
        &mut self,
        who: &Address,
        name: &str,
        update: &ListingUpdate,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut l = self.listing_or_err(name)?;
        if l.owner != *who {
            return Err(TxError::NotListingOwner(name.to_owned()));
        }
        if update.is_empty() {
            return Err(TxError::InvalidListing("the update changes nothing".into()));
        }
        if let Some(p) = update.price {
            l.price = p;
        }
        if let Some(a) = update.active {
            l.active = a;
        }
        if let Some(s) = update.server {
            l.server = s;
        }
        ev.push(Event::MarketListingUpdated {
            name: name.to_owned(),
            price: l.price,
            active: l.active,
            server: l.server,
        });
        self.market_listings.insert(name.to_owned(), l);
        Ok(())
    }

    /// Binds the hash of an API key to `owner`. A hash is bound once, ever.
    pub fn market_key_create(
        &mut self,
        owner: &Address,
        key_hash: Hash,
        label: &str,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if key_hash == Hash::ZERO {
            return Err(TxError::InvalidApiKey("the zero hash is not a key".into()));
        }
        if label.chars().count() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
            return Err(TxError::InvalidApiKey(format!(
                "label must be at most {MAX_LABEL_LEN} printable characters"
            )));
        }
        if self.market_keys.contains(&key_hash) {
            return Err(TxError::ApiKeyExists(key_hash));
        }
        let live = self.market_keys_of(owner).iter().filter(|(_, k)| k.revoked.is_none()).count();
        if live >= params.market_max_keys as usize {
            return Err(TxError::TooManyApiKeys { max: params.market_max_keys });
        }
        self.market_keys.insert(
            key_hash,
            ApiKey { owner: *owner, label: label.to_owned(), created: now, revoked: None },
        );
        self.market_account_keys.insert((*owner, key_hash), ());
        ev.push(Event::MarketKeyCreated { owner: *owner, key_hash, label: label.to_owned() });
        Ok(())
    }

    /// Revokes an API key (its owner only). Usage served before the revocation can still be
    /// settled against it.
    pub fn market_key_revoke(
        &mut self,
        who: &Address,
        key_hash: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut k = self.market_key(&key_hash).ok_or(TxError::UnknownApiKey(key_hash))?;
        if k.owner != *who {
            return Err(TxError::NotKeyOwner(key_hash));
        }
        if k.revoked.is_some() {
            return Err(TxError::ApiKeyRevoked(key_hash));
        }
        k.revoked = Some(now);
        self.market_keys.insert(key_hash, k);
        ev.push(Event::MarketKeyRevoked { owner: *who, key_hash });
        Ok(())
    }

    /// Rates a listing 1 to 5 stars; only consumers who paid for it, one rating each (a new
    /// one replaces the old).
    pub fn market_rate(
        &mut self,
        consumer: &Address,
        name: &str,
        stars: u8,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if !(1..=5).contains(&stars) {
            return Err(TxError::InvalidRating(stars));
        }
        let mut l = self.listing_or_err(name)?;
        if self.market_spent(name, consumer).is_zero() {
            return Err(TxError::NotACustomer(name.to_owned()));
        }
        let key = (name.to_owned(), *consumer);
        match self.market_ratings.get(&key).copied() {
            Some(old) => {
                l.rating_sum =
                    l.rating_sum.saturating_sub(u64::from(old)).saturating_add(u64::from(stars))
            }
            None => {
                l.rating_sum = l.rating_sum.saturating_add(u64::from(stars));
                l.rating_count = l.rating_count.saturating_add(1);
            }
        }
        self.market_ratings.insert(key, stars);
        self.market_listings.insert(name.to_owned(), l);
        ev.push(Event::MarketRated { listing: name.to_owned(), consumer: *consumer, stars });
        Ok(())
    }
}
