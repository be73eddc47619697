//! The line of a schema error. Decoding goes through `serde_json::Value`, which keeps no
//! positions, so a document that fails to decode is parsed once more straight into its type,
//! only to learn where the parser stops.

use serde::de::DeserializeOwned;
use sluice_store::k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use sluice_store::k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_store::k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The text one document was read from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DocumentText<'a> {
    Yaml {
        text: &'a str,
        lines_before: usize,
    },
    Json {
        text: &'a str,
        lines_before: usize,
    },
    /// A list item: its text is not cut out, so its errors are reported at its start.
    Unknown,
}

impl DocumentText<'_> {
    /// The file line where decoding `api_version`/`kind` from this text fails, if the parser
    /// tells.
    pub fn error_line(self, api_version: &str, kind: &str) -> Option<usize> {
        match (api_version, kind) {
            ("networking.k8s.io/v1", "Ingress") => self.first_error::<Ingress>(),
            ("networking.k8s.io/v1", "IngressClass") => self.first_error::<IngressClass>(),
            ("v1", "Service") => self.first_error::<Service>(),
            ("v1", "Endpoints") => self.first_error::<Endpoints>(),
            ("v1", "Secret") => self.first_error::<Secret>(),
            ("v1", "ConfigMap") => self.first_error::<ConfigMap>(),
            ("discovery.k8s.io/v1", "EndpointSlice") => self.first_error::<EndpointSlice>(),
            _ => None,
        }
    }

    fn first_error<T: DeserializeOwned>(self) -> Option<usize> {
        match self {
            DocumentText::Yaml { text, lines_before } => {
                let err = serde_saphyr::from_str::<T>(text).err()?;
                Some(err.location()?.line() as usize + lines_before)
            }
            DocumentText::Json { text, lines_before } => {
                let err = serde_json::from_str::<T>(text).err()?;
                (err.line() > 0).then(|| err.line() + lines_before)
            }
            DocumentText::Unknown => None,
        }
    }
}
