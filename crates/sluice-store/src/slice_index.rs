//! Which EndpointSlices belong to which Service (label `kubernetes.io/service-name`), so that
//! resolving a Service's endpoints does not scan every slice.

use crate::store::NamespacedName;
use imbl::OrdMap;
use std::sync::Arc;

/// Service `namespace/name` -> names of its EndpointSlices, sorted.
///
/// A Service has a handful of slices at most, so each keeps a shared sorted slice rebuilt on
/// change: an `OrdSet` per Service cost ~500 bytes for its one entry (12 MB at 20,000
/// Services), and cloning the `Arc` keeps copy-on-write of a map node cheap.
#[derive(Debug, Clone, Default)]
pub(crate) struct SliceIndex {
    by_service: OrdMap<NamespacedName, Arc<[Box<str>]>>,
}

impl SliceIndex {
    pub fn insert(&mut self, service: NamespacedName, slice: &str) {
        let names = self.by_service.get(&service).map_or(&[][..], |n| &n[..]);
        let Err(at) = names.binary_search_by(|name| (**name).cmp(slice)) else {
            return;
        };
        let mut updated = Vec::with_capacity(names.len() + 1);
        updated.extend_from_slice(&names[..at]);
        updated.push(Box::from(slice));
        updated.extend_from_slice(&names[at..]);
        self.by_service.insert(service, updated.into());
    }

    pub fn remove(&mut self, service: &NamespacedName, slice: &str) {
        let Some(names) = self.by_service.get(service) else {
            return;
        };
        let Ok(at) = names.binary_search_by(|name| (**name).cmp(slice)) else {
            return;
        };
        if names.len() == 1 {
            self.by_service.remove(service);
            return;
        }
        let updated: Arc<[Box<str>]> = names[..at]
            .iter()
            .chain(&names[at + 1..])
            .cloned()
            .collect();
        self.by_service.insert(service.clone(), updated);
    }

    /// The names of the slices of `service`, in order.
    pub fn slices_of(&self, service: &NamespacedName) -> impl Iterator<Item = &str> {
        self.by_service
            .get(service)
            .into_iter()
            .flat_map(|names| names.iter().map(|name| &**name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_sorted_and_unique_and_an_empty_service_is_dropped() {
        let web = NamespacedName::new("shop", "web");
        let mut index = SliceIndex::default();
        for name in ["web-b", "web-a", "web-c", "web-a"] {
            index.insert(web.clone(), name);
        }
        assert_eq!(
            index.slices_of(&web).collect::<Vec<_>>(),
            ["web-a", "web-b", "web-c"]
        );
        index.remove(&web, "web-b");
        index.remove(&web, "web-x");
        assert_eq!(
            index.slices_of(&web).collect::<Vec<_>>(),
            ["web-a", "web-c"]
        );
        index.remove(&web, "web-a");
        index.remove(&web, "web-c");
        assert!(index.by_service.is_empty());
        assert_eq!(index.slices_of(&web).count(), 0);
    }
}
