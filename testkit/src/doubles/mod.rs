//! Test doubles of secretsync's providers, each behind its cargo feature so that the emulator
//! binary and the benchmark build only what they use:
//!
//! - `aws`: a `moto` server (AWS Secrets Manager, from `.venv-test`) and a fault-injecting, counting
//!   proxy in front of it; `aws-sdk` adds admin clients on the AWS SDK.
//! - `bao`: an OpenBao dev server (the Vault API, from `.venv-test`) and a fault-injecting proxy.
//! - `vaultkv`: an in-process Vault KV v2 double with fault injection.
//! - `azure`: an in-process HTTPS double of Azure Key Vault and the Entra ID token endpoint.
//!
//! The peers from `.venv-test` are installed by `make test-deps` (`scripts/test-deps.sh`).

use std::path::{Path, PathBuf};

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "bao")]
pub mod bao;
#[cfg(feature = "vaultkv")]
pub mod vaultkv;

/// The workspace's root directory (the parent of this crate's).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
}

/// `bin/<name>` of the workspace's `.venv-test` (test peers installed by `make test-deps`).
pub fn venv_bin(name: &str) -> PathBuf {
    workspace_root().join(".venv-test/bin").join(name)
}
