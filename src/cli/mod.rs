//! Offline commands: `crds`, `check`, `render`, `convert`, `store`, `audit verify`.

pub mod audit;
pub mod check;
pub mod convert;
pub mod crds;
pub mod evaluate;
pub mod manifests;
pub mod offline;
pub mod refresh;
pub mod render;
pub mod store;
