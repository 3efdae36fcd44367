//! secretsync: keeps Kubernetes Secrets in sync with external secret stores.
//!
//! The library holds everything; `main.rs` only parses the command line and dispatches.
//!
//! Lints: the workspace forbids `unsafe` and warns on missing docs (`Cargo.toml`); outside tests a
//! panic on `unwrap()` is not an error-handling strategy (`clippy.toml` allows it in tests).

#![warn(clippy::unwrap_used)]

pub mod api;
pub mod audit;
pub mod cli;
pub mod controller;
pub mod convert;
pub mod providers;
pub mod server;
pub mod stores;
pub mod telemetry;
pub mod validate;
pub mod value;
