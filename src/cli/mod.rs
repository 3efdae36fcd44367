//! Offline commands: `crds`, `check`, `render`, `store`, `audit verify`.

pub mod crds;
pub mod store;
