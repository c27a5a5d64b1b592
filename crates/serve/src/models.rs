//! Loading the served models and checking them against their listings.

use crate::{
    config::{ServeConfig, ServedModel},
    error::ServeError,
    predict::{is_predict_dir, PredictModel},
};
use flock_ledger::market::{Listing, ModelKind, Product, Provenance};
use flock_ml::ChatModel;
use flock_node::Node;
use flock_primitives::Hash;
use serde_json::{json, Value};
use std::{collections::BTreeMap, path::Path, sync::Arc};

/// What runs a listing.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    /// A decoder with its tokenizer and chat template.
    Language(Arc<ChatModel>),
    /// An MLP.
    Predict(Arc<PredictModel>),
}

/// A served listing.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) listing: String,
    pub(crate) engine: Engine,
    pub(crate) artifact: Hash,
    /// blake3 of `model.safetensors`, when the directory has one file of weights.
    pub(crate) weights_hash: Option<Hash>,
    pub(crate) provenance: Option<Provenance>,
    pub(crate) provenance_id: String,
    /// Longest prompt + completion (language models).
    pub(crate) context_length: usize,
    pub(crate) created_height: u64,
}

fn kind_name(k: ModelKind) -> &'static str {
    match k {
        ModelKind::Language => "language",
        ModelKind::Predict => "predict",
    }
}

/// `LISTING@ARTIFACT` plus `#PRODUCT/TASK/ROUND` when the ledger recorded a provenance.
pub(crate) fn provenance_id(listing: &str, artifact: &Hash, p: Option<&Provenance>) -> String {
    match p {
        Some(p) => {
            let product = match p.product {
                Product::Arena => "arena",
                Product::Alliance => "alliance",
            };
            format!("{listing}@{artifact}#{product}/{}/{}", p.task, p.round)
        }
        None => format!("{listing}@{artifact}"),
    }
}

impl Served {
    /// The `flock` object every response carries.
    pub(crate) fn flock_meta(&self) -> Value {
        json!({
            "listing": self.listing,
            "artifact": self.artifact,
            "provenance_id": self.provenance_id,
            "provenance": self.provenance.as_ref().map(|p| json!({
                "product": p.product,
                "task": p.task,
                "round": p.round,
                "score": p.score,
                "validators": p.validators.len(),
                "model": p.model,
            })),
            "weights_match_artifact": self.weights_hash == Some(self.artifact),
        })
    }

    pub(crate) fn kind(&self) -> ModelKind {
        match self.engine {
            Engine::Language(_) => ModelKind::Language,
            Engine::Predict(_) => ModelKind::Predict,
        }
    }
}

fn hash_file(path: &Path) -> Option<Hash> {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(path).ok()?;
    h.update_reader(f).ok()?;
    Some(Hash(*h.finalize().as_bytes()))
}

fn load_one(node: &Node, cfg: &ServeConfig, m: &ServedModel) -> Result<Served, ServeError> {
    let listing: Listing = node
        .with_chain(|c| c.ledger().state().market_listing(&m.listing))
        .ok_or_else(|| ServeError::UnknownListing(m.listing.clone()))?;
    if !listing.active {
        return Err(ServeError::InactiveListing(m.listing.clone()));
    }
    let server = cfg.server_key.address();
    if listing.server != server {
        return Err(ServeError::WrongServer {
            listing: m.listing.clone(),
            expected: listing.server.to_string(),
            got: server.to_string(),
        });
    }
    let found = if is_predict_dir(&m.dir) { ModelKind::Predict } else { ModelKind::Language };
    if found != listing.kind {
        return Err(ServeError::KindMismatch {
            listing: m.listing.clone(),
            listed: kind_name(listing.kind),
            dir: m.dir.clone(),
            found: kind_name(found),
        });
    }
    let (engine, context_length) = match found {
        ModelKind::Language => {
            let model = ChatModel::load(&m.dir, &flock_ml::cpu())
                .map_err(|source| ServeError::Model { dir: m.dir.clone(), source })?;
            if !model.chatml {
                tracing::warn!(listing = %m.listing, template = model.template_kind(), "the model's chat template is not ChatML: /v1/chat/completions will refuse requests, /v1/completions works");
            }
            let ctx = model.config.max_position_embeddings;
            (Engine::Language(Arc::new(model)), ctx)
        }
        ModelKind::Predict => {
            let model = PredictModel::load(&m.dir)
                .map_err(|reason| ServeError::PredictModel { dir: m.dir.clone(), reason })?;
            (Engine::Predict(Arc::new(model)), 0)
        }
    };
    let weights_hash = hash_file(&m.dir.join("model.safetensors"));
    if weights_hash != Some(listing.artifact) {
        tracing::warn!(listing = %m.listing, artifact = %listing.artifact, "model.safetensors does not hash to the listing's artifact (a bundle artifact, or a different model)");
    }
    let provenance_id = provenance_id(&m.listing, &listing.artifact, listing.provenance.as_ref());
    tracing::info!(listing = %m.listing, dir = %m.dir.display(), kind = kind_name(found), %provenance_id, "serving");
    Ok(Served {
        listing: m.listing.clone(),
        engine,
        artifact: listing.artifact,
        weights_hash,
        provenance: listing.provenance,
        provenance_id,
        context_length,
        created_height: listing.created.0,
    })
}

/// Loads every configured model, checking each against its listing on the ledger.
pub(crate) fn load_all(
    node: &Node,
    cfg: &ServeConfig,
) -> Result<BTreeMap<String, Arc<Served>>, ServeError> {
    let mut out = BTreeMap::new();
    for m in &cfg.models {
        if out.contains_key(&m.listing) {
            return Err(ServeError::DuplicateListing(m.listing.clone()));
        }
        out.insert(m.listing.clone(), Arc::new(load_one(node, cfg, m)?));
    }
    Ok(out)
}
