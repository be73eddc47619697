//! Sources of Kubernetes objects: they fill an [`sluice_store::ObjectStore`] and publish it,
//! with their own problems, after every batch of changes.

pub mod kubernetes;
pub mod manifest;
mod update;

pub use manifest::ManifestSource;
pub use update::SourceUpdate;
