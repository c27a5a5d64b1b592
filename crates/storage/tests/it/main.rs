//! Integration tests of flock-storage (one binary; modules by concern).

mod commit;
mod crash;
mod differential;
mod proofs;
mod pruning;
mod reopen;
mod util;
