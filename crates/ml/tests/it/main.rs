//! Integration tests of flock-ml (one binary, as the workspace does).

mod bench;
mod common;
mod decoder;
mod federated;
mod import;
mod lm;
mod mlp;
