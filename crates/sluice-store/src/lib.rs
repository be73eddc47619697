//! Typed Kubernetes objects by kind, namespace and name: what the sources fill and translation
//! reads. No async, no I/O. Services, EndpointSlices and Endpoints are kept slim (only what
//! backend resolution reads, see [`slim`]); the other kinds as k8s-openapi objects.
//!
//! Sources own a mutable [`ObjectStore`], apply changes to it, and publish an `Arc` clone of it;
//! translation reads that clone. Every kind has a revision counter so the reader can tell which
//! kinds changed (endpoint-only changes skip the route rebuild).

mod checksum;
mod decode;
mod slice_index;
pub mod slim;
mod store;

pub use checksum::{
    CHECKSUM_API_VERSION, CHECKSUM_GROUP, CHECKSUM_VERSION, CheckSumSpec, IngressCheckSum,
    SecretCheckSum,
};
pub use decode::{DecodeError, Named, StoredObject};
/// The persistent map type of [`ObjectStore`]'s fields.
pub use imbl::OrdMap;
/// One difference between two versions of an [`OrdMap`] (`OrdMap::diff`).
pub use imbl::ordmap::DiffItem;
pub use store::{KindRevisions, NamespacedName, ObjectStore, Stored, changed_keys};

/// Re-exported so that sources and translation agree on one version of the API types.
pub use k8s_openapi;
