//! End-to-end tests of the `flockd` binary: real processes, real ports, real files.

mod agents;
mod cli;
mod crash;
mod harness;
mod restart;
