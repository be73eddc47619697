//! Ports as the endpoint kinds list them; matched by name against the Service's port.

/// A port of a Service or of a legacy Endpoints subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// `None` when the manifest leaves it out; a Service port named in an Ingress must match
    /// `Some`.
    pub name: Option<Box<str>>,
    pub port: i32,
}

/// A port of an EndpointSlice: Kubernetes lets its number be absent (then it carries no
/// endpoints for that port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    pub name: Option<Box<str>>,
    pub port: Option<i32>,
}

impl NamedPort {
    /// The name, empty when absent (how Kubernetes pairs unnamed ports).
    pub fn name_or_empty(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

impl SlicePort {
    /// The name, empty when absent (how Kubernetes pairs unnamed ports).
    pub fn name_or_empty(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}
