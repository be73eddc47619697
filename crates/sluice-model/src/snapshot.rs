//! The immutable routing snapshot, swapped whole on every configuration change.

use crate::backend::{BackendKey, BackendSlot};
use crate::host::HostTable;
use crate::policy::GlobalOptions;
use crate::tls::CertStore;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases by one with every applied snapshot.
    pub version: u64,
    pub hosts: HostTable,
    pub certificates: CertStore,
    /// Every backend a route points at, so endpoint changes can be applied without rebuilding
    /// routes.
    /// Shared with the next snapshot when no backend comes or goes.
    pub backends: Arc<BTreeMap<BackendKey, Arc<BackendSlot>>>,
    pub options: Arc<GlobalOptions>,
}

/// The hosts (by `Arc`, default server included) a snapshot has that the one before it did not,
/// and the other way round: what readers that index hosts need to redo after a swap.
#[derive(Debug, Clone, Default)]
pub struct HostChanges {
    pub removed: Vec<Arc<crate::VirtualHost>>,
    pub added: Vec<Arc<crate::VirtualHost>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotCounts {
    pub hosts: usize,
    pub routes: usize,
    pub backends: usize,
    pub certificates: usize,
}

impl Snapshot {
    pub fn counts(&self) -> SnapshotCounts {
        let mut hosts = 0;
        let mut routes = 0;
        for vhost in self.hosts.iter() {
            if !vhost.name.is_empty() {
                hosts += 1;
            }
            routes += vhost.routes.len() + usize::from(vhost.fallback.is_some());
        }
        SnapshotCounts {
            hosts,
            routes,
            backends: self.backends.len(),
            certificates: self.certificates.len(),
        }
    }
}
