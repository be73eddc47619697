//! The routing snapshot: what the data plane reads, and nothing else.
//!
//! Everything here is immutable once built (except the per-backend endpoint slot, which is
//! swapped on its own so that an endpoint change never rebuilds routes). No async, no I/O.

pub mod backend;
pub mod canary;
pub mod host;
pub mod net;
pub mod object;
pub mod path;
pub mod policy;
pub mod problem;
pub mod route;
pub mod shared_map;
pub mod snapshot;
pub mod tls;

pub use backend::{BackendKey, BackendSlot, Endpoints, ServicePortRef, Unavailable, Upstream};
pub use canary::{
    ActionValue, Canary, CanaryActions, CanaryRoute, CanaryRule, CanaryTarget, HeaderAction, ModOp,
    QueryAction, ValueMatch, Variable, Verdict,
};
pub use host::{HostTable, VirtualHost};
pub use net::Cidr;
pub use object::{ObjectKind, ObjectRef, Origin};
pub use path::{PathKind, PathMatch};
pub use policy::{GlobalOptions, RoutePolicy};
pub use problem::{Problem, Severity};
pub use route::{Route, RouteTarget};
pub use shared_map::SharedMap;
pub use snapshot::{HostChanges, Snapshot, SnapshotCounts};
pub use tls::{CertSet, CertStore, KeyAlgorithm, ServerCert, TlsVersions};
