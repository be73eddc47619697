//! What every source publishes.

use sluice_model::Problem;
use sluice_store::ObjectStore;
use std::sync::Arc;

/// What a source publishes after each batch of changes.
#[derive(Debug, Clone, Default)]
pub struct SourceUpdate {
    pub store: Arc<ObjectStore>,
    /// Problems of the source itself: files that could not be read or parsed, documents that
    /// are not valid objects.
    pub problems: Vec<Problem>,
}
