//! Backends (Service + port) and their endpoints.
//!
//! A route points at a [`BackendSlot`]. The slot's endpoints are swapped on their own when
//! Services, EndpointSlices or Endpoints change, so an endpoint change never rebuilds routes and a
//! request reads them with one atomic load.

use arc_swap::ArcSwap;
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The Ingress's reference to a Service port: by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum ServicePortRef {
    Number(i32),
    Name(String),
}

impl fmt::Display for ServicePortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePortRef::Number(n) => write!(f, "{n}"),
            ServicePortRef::Name(n) => f.write_str(n),
        }
    }
}

/// Identity of a backend: `namespace/service:port` as the Ingress names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BackendKey {
    pub namespace: String,
    pub service: String,
    pub port: ServicePortRef,
}

impl fmt::Display for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Upstream {
    /// A ready endpoint address.
    Socket(SocketAddr),
    /// An ExternalName Service: resolved by DNS when connecting.
    Dns { host: String, port: u16 },
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Socket(a) => write!(f, "{a}"),
            Upstream::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a backend has nothing to send to (answered with 503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Unavailable {
    /// The Service does not exist.
    NoService,
    /// The Service has no port matching the Ingress's reference.
    NoServicePort,
    /// The Service exists but none of its endpoints is ready.
    NoReadyEndpoints,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NoService => "service not found",
            Unavailable::NoServicePort => "service has no such port",
            Unavailable::NoReadyEndpoints => "no ready endpoints",
        })
    }
}

/// The current endpoints of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Endpoints {
    Ready(Vec<Upstream>),
    Unavailable(Unavailable),
}

impl Endpoints {
    pub fn upstreams(&self) -> &[Upstream] {
        match self {
            Endpoints::Ready(v) => v,
            Endpoints::Unavailable(_) => &[],
        }
    }
}

/// A backend as routes see it: its key and its swappable endpoints, plus the round-robin cursor.
#[derive(Debug)]
pub struct BackendSlot {
    pub key: BackendKey,
    endpoints: ArcSwap<Endpoints>,
    cursor: AtomicUsize,
}

impl BackendSlot {
    pub fn new(key: BackendKey, endpoints: Endpoints) -> Self {
        BackendSlot {
            key,
            endpoints: ArcSwap::from_pointee(endpoints),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn endpoints(&self) -> Arc<Endpoints> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoints; requests already past endpoint selection are unaffected.
    pub fn set_endpoints(&self, endpoints: Endpoints) {
        if *self.endpoints.load().as_ref() != endpoints {
            self.endpoints.store(Arc::new(endpoints));
        }
    }

    /// Round-robin choice over the ready endpoints. `attempt` offsets the pick for retries.
    pub fn pick(&self) -> Result<Upstream, Unavailable> {
        let guard = self.endpoints.load();
        match guard.as_ref() {
            Endpoints::Ready(list) if !list.is_empty() => {
                let n = self.cursor.fetch_add(1, Ordering::Relaxed);
                Ok(list[n % list.len()].clone())
            }
            Endpoints::Ready(_) => Err(Unavailable::NoReadyEndpoints),
            Endpoints::Unavailable(why) => Err(why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BackendKey {
        BackendKey {
            namespace: "default".into(),
            service: "web".into(),
            port: ServicePortRef::Number(80),
        }
    }

    #[test]
    fn round_robin_visits_every_endpoint() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let slot = BackendSlot::new(
            key(),
            Endpoints::Ready(vec![Upstream::Socket(a), Upstream::Socket(b)]),
        );
        let picks: Vec<_> = (0..4).map(|_| slot.pick().unwrap()).collect();
        assert_eq!(
            picks.iter().filter(|u| **u == Upstream::Socket(a)).count(),
            2
        );
        assert_eq!(
            picks.iter().filter(|u| **u == Upstream::Socket(b)).count(),
            2
        );
    }

    #[test]
    fn unavailable_backends_say_why() {
        let slot = BackendSlot::new(key(), Endpoints::Unavailable(Unavailable::NoService));
        assert_eq!(slot.pick(), Err(Unavailable::NoService));
        slot.set_endpoints(Endpoints::Ready(vec![]));
        assert_eq!(slot.pick(), Err(Unavailable::NoReadyEndpoints));
    }
}
