//! The admin listener: health, readiness, and JSON views of what the gateway serves.
//!
//! It reads the same snapshot pointer as the data plane and a small report written by the apply
//! loop; it never blocks traffic.

mod gates;
mod observability;
mod server;
mod state;
mod views;

pub use gates::{ChecksumGates, GateCounters, GateDiff, GateState, GateView};
pub use server::serve_admin;
pub use state::{ApplyReport, RuntimeState};
pub use views::{RouteView, SnapshotView, routes_of};
