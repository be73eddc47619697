//! What Sluice reads of the endpoint kinds (Services, EndpointSlices, legacy Endpoints), kept
//! instead of the k8s-openapi objects. At 20,000 Services and EndpointSlices the full objects
//! were ~1-1.5 KB each (824 B inline per Service, a 540 B map leaf for a slice's one label) for
//! maybe 100 B that backend resolution reads.
//!
//! Each kind is converted once, where it is decoded (manifest documents, API server watch
//! events), so the full object is never held beside the store's copy. Conversion cannot fail:
//! a missing field becomes what Kubernetes means by its absence.

mod endpoint_slice;
mod endpoints;
mod port;
mod service;

pub use endpoint_slice::SlimEndpointSlice;
pub use endpoints::{SlimEndpoints, SlimSubset};
pub use port::{NamedPort, SlicePort};
pub use service::SlimService;

/// A string field the way the slim kinds keep it: no spare capacity.
fn boxed(s: String) -> Box<str> {
    s.into_boxed_str()
}
