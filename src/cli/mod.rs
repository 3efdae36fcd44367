//! Offline commands: `crds`, `check`, `render`, `store`, `audit verify`.

pub mod audit;
pub mod check;
pub mod crds;
pub mod manifests;
pub mod refresh;
pub mod render;
pub mod store;
