//! secretsync: keeps Kubernetes Secrets in sync with external secret stores.
//!
//! The library holds everything; `main.rs` only parses the command line and dispatches.

pub mod api;
pub mod audit;
pub mod cli;
pub mod controller;
#[doc(hidden)]
pub mod fuzzing;
pub mod providers;
pub mod server;
pub mod stores;
pub mod telemetry;
pub mod value;
