//! `--state-dir`: the Ingress and Secret versions this instance serves, kept on disk so that a
//! restart does not jump ahead of a gray rollout or a failing checksum gate.
//!
//! One JSON file, replaced atomically (temporary file in the same directory, then rename), so a
//! crash leaves either the old or the new file. It holds TLS private keys (the served Secrets), so
//! it is created readable by the owner only.

use serde::{Deserialize, Serialize};
use sluice_model::Origin;
use sluice_store::k8s_openapi::api::core::v1::Secret;
use sluice_store::k8s_openapi::api::networking::v1::Ingress;
use sluice_store::{NamespacedName, OrdMap, Stored};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FILE_NAME: &str = "served-objects.json";
const FORMAT: u32 = 1;

pub struct ServedState {
    path: PathBuf,
}

/// The served versions read back at start.
#[derive(Debug, Default)]
pub struct Restored {
    pub ingresses: OrdMap<NamespacedName, Stored<Ingress>>,
    pub secrets: OrdMap<NamespacedName, Stored<Secret>>,
}

#[derive(Serialize, Deserialize)]
struct FileFormat<I, S> {
    format: u32,
    ingresses: BTreeMap<String, Entry<I>>,
    secrets: BTreeMap<String, Entry<S>>,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    /// Manifest file of the object, when it came from one (for problem reports after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(default)]
    line: usize,
    object: T,
}

impl ServedState {
    pub fn new(dir: PathBuf) -> ServedState {
        ServedState {
            path: dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok(None)` when there is no file yet (first start).
    pub fn load(&self) -> Result<Option<Restored>, String> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the served-versions file: {e}")),
        };
        let file: FileFormat<Ingress, Secret> = serde_json::from_slice(&text).map_err(|e| {
            format!("the served-versions file is not valid (delete it to start afresh): {e}")
        })?;
        if file.format != FORMAT {
            return Err(format!(
                "the served-versions file has format {} but this Sluice reads format {FORMAT}",
                file.format
            ));
        }
        Ok(Some(Restored {
            ingresses: restore(file.ingresses),
            secrets: restore(file.secrets),
        }))
    }

    pub fn save(
        &self,
        ingresses: &OrdMap<NamespacedName, Stored<Ingress>>,
        secrets: &OrdMap<NamespacedName, Stored<Secret>>,
    ) -> Result<(), String> {
        let file = FileFormat {
            format: FORMAT,
            ingresses: entries(ingresses),
            secrets: entries(secrets),
        };
        let json = serde_json::to_vec(&file)
            .map_err(|e| format!("cannot serialize the served versions: {e}"))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut out = options.open(&temp)?;
            out.write_all(&json)?;
            out.sync_all()?;
            std::fs::rename(&temp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            format!("cannot write the served-versions file: {e}")
        })
    }
}

fn entries<T>(map: &OrdMap<NamespacedName, Stored<T>>) -> BTreeMap<String, Entry<&T>> {
    map.iter()
        .map(|(key, stored)| {
            let (file, line) = match &stored.origin {
                Origin::File { path, line } => (Some(path.to_string()), *line),
                Origin::ApiServer => (None, 0),
            };
            let entry = Entry {
                file,
                line,
                object: stored.object.as_ref(),
            };
            (format!("{}/{}", key.namespace, key.name), entry)
        })
        .collect()
}

fn restore<T>(entries: BTreeMap<String, Entry<T>>) -> OrdMap<NamespacedName, Stored<T>> {
    entries
        .into_iter()
        .filter_map(|(key, entry)| {
            let key = NamespacedName::parse(&key)?;
            let origin = match entry.file {
                Some(path) => Origin::File {
                    path: Arc::from(path),
                    line: entry.line,
                },
                None => Origin::ApiServer,
            };
            Some((
                key,
                Stored {
                    object: Arc::new(entry.object),
                    origin,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn served_versions_round_trip_with_their_origin() {
        let dir = std::env::temp_dir().join(format!("sluice-served-{}", std::process::id()));
        let state = ServedState::new(dir.clone());
        assert!(state.load().unwrap().is_none(), "no file yet");
        let key = NamespacedName::new("ns", "web-7");
        let ingress = Ingress {
            metadata: ObjectMeta {
                name: Some("web-7".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..Ingress::default()
        };
        let origin = Origin::File {
            path: Arc::from("/m/web.yaml"),
            line: 3,
        };
        let ingresses = OrdMap::from_iter([(
            key.clone(),
            Stored {
                object: Arc::new(ingress.clone()),
                origin: origin.clone(),
            },
        )]);
        state.save(&ingresses, &OrdMap::new()).unwrap();
        let restored = state.load().unwrap().unwrap();
        assert_eq!(*restored.ingresses[&key].object, ingress);
        assert_eq!(restored.ingresses[&key].origin, origin);
        assert!(restored.secrets.is_empty());

        std::fs::write(state.path(), b"{not json").unwrap();
        assert!(state.load().unwrap_err().contains("delete it"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
