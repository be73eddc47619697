//! A route: a path matcher of one host and what to do with the requests it matches.

use crate::backend::BackendSlot;
use crate::canary::CanaryRoute;
use crate::object::ObjectRef;
use crate::path::PathMatch;
use crate::policy::RoutePolicy;
use std::sync::Arc;

/// What a matched request is handed to.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// Proxy to a Service's endpoints.
    Backend(Arc<BackendSlot>),
    /// A primary backend with canaries that may take the request instead.
    Canaries(Arc<CanaryRoute>),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub path: PathMatch,
    pub target: RouteTarget,
    pub policy: Arc<RoutePolicy>,
    /// The Ingress this route came from (for problems, logs and metrics).
    pub ingress: Arc<ObjectRef>,
}

impl Route {
    /// The primary backend (canaries aside).
    pub fn backend(&self) -> &Arc<BackendSlot> {
        match &self.target {
            RouteTarget::Backend(slot) => slot,
            RouteTarget::Canaries(canaries) => &canaries.primary,
        }
    }
}
