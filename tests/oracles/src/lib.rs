//! Independent oracles for the AAuth workspace: see `tests/oracles.rs`.
