//! Translation: the object store to the next routing snapshot and the problems found on the way.
//!
//! Pure: no I/O, no clocks, no globals. The same store always gives the same snapshot and the
//! same problems in the same order. Each Ingress is translated on its own so that a bad one (or
//! a bad path of one) is reported and skipped without touching the others.
//!
//! Choices worth knowing (routing.md has the reasons):
//! - Precedence is ingress-nginx's: oldest `creationTimestamp` first; at equal timestamps the
//!   greater `namespace/name` first; Ingresses without a timestamp (usual in manifest files) after
//!   all others, in ascending `namespace/name` order. The first Ingress naming a host owns it: its
//!   `spec.defaultBackend` is that host's fallback. The oldest Ingress without rules is the
//!   catch-all of the default server. Same host + path + pathType: the first wins, later ones
//!   get a warning naming the winner.
//! - Regex is per Ingress (`use-regex`, or a non-empty `rewrite-target`) and only changes
//!   ImplementationSpecific paths; Exact and Prefix keep their Kubernetes meaning. The ConfigMap
//!   option `regex-host-wide` extends it to every Ingress on the host, as ingress-nginx does.
//! - A malformed annotation or any `*-snippet` rejects the whole Ingress; a bad host, path or
//!   backend rejects that rule or path only; a bad TLS Secret is reported and its hosts keep
//!   routing (and stay TLS hosts) with the default certificate.
//! - A host listed with several Secrets gets one certificate per key algorithm (dual ECDSA +
//!   RSA); for the same algorithm the first (oldest) wins.
//! - Canary Ingresses attach to the primary route with the same host, path and pathType (see
//!   the `canary` module for the rules and limits).

mod annotations;
mod backend_problems;
mod build;
mod canary;
mod certs;
mod checksum;
mod class;
mod endpoints;
mod globals;
mod memo;
mod names;
mod referrer;
mod rollout;
mod ssl_protocols;
mod translator;
mod validity;
mod values;

pub use backend_problems::{any_backend_unavailable, backend_problems};
pub use checksum::{
    ChecksumId, checksum_of, first_certificate_der, ingress_ids, name_id, object_version,
    secret_ids, sorted_ids,
};
pub use class::is_ours;
pub use endpoints::{refresh_endpoints, refresh_services, resolve_endpoints, services_changed};
pub use referrer::{ReferrerLists, referrer_accepts};
pub use rollout::{Rollout, RolloutFamily};
pub use translator::Translator;

use sluice_model::{HostChanges, Problem, Snapshot};
use sluice_store::{NamespacedName, ObjectStore};

/// What the controller was told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateOptions {
    /// IngressClass name handled (`--ingress-class`).
    pub ingress_class: String,
    /// `spec.controller` of the IngressClasses handled (`--controller-class`).
    pub controller_class: String,
    /// Also handle Ingresses without any class.
    pub watch_ingress_without_class: bool,
    /// TLS Secret used when no host matches the SNI.
    pub default_ssl_certificate: Option<NamespacedName>,
    /// The global options ConfigMap.
    pub configmap: Option<NamespacedName>,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            ingress_class: "sluice".to_string(),
            controller_class: "sluice.dev/ingress-controller".to_string(),
            watch_ingress_without_class: false,
            default_ssl_certificate: None,
            configmap: None,
        }
    }
}

/// The next snapshot and everything that was rejected or decided on the user's behalf.
#[derive(Debug, Clone)]
pub struct Translation {
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
    /// Hosts of this snapshot that the one the same [`Translator`] made before did not have,
    /// and the other way round.
    pub host_changes: HostChanges,
}

/// Builds the snapshot of `store`. `snapshot.version` is left 0; the caller numbers snapshots.
/// Keep a [`Translator`] instead to translate one store after another: it redoes only what
/// changed.
pub fn translate(store: &ObjectStore, opts: &TranslateOptions) -> Translation {
    Translator::new(opts.clone()).translate(store)
}
