//! One manifest file's text to the objects it defines, each with the line it starts on.

use super::held::Held;
use super::locate::DocumentText;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_saphyr::{SnippetMode, Spanned};
use sluice_model::{ObjectKind, ObjectRef, Origin, Problem};
use sluice_store::{DecodeError, NamespacedName, ObjectStore, StoredObject};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An object is identified across files by its kind and key, as in the store.
pub(crate) type ObjectKey = (ObjectKind, NamespacedName);

/// One decoded object and where it was defined.
#[derive(Debug)]
pub(crate) struct FileObject {
    pub object: Held,
    /// A hash of the document as read, to tell a real change from a re-save of the same content
    /// (the document itself is not kept: at 20,000 Ingresses it cost hundreds of MB).
    pub fingerprint: u64,
    pub origin: Origin,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedFile {
    pub objects: BTreeMap<ObjectKey, FileObject>,
    pub problems: Vec<Problem>,
    /// Some document could not be read as an object, so `objects` may be missing some.
    pub failed: bool,
}

/// What the user is told to do about a document that could not be read.
const KEEP_HINT: &str =
    "fix the file; until it is fixed, the objects this file last defined stay in effect";

/// Parses a file: JSON (a stream of values) for `.json`, YAML (multi-document) otherwise.
pub(crate) fn parse_file(path: &Arc<str>, text: &str, is_json: bool) -> ParsedFile {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut parser = FileParser {
        path: path.clone(),
        parsed: ParsedFile::default(),
    };
    if is_json {
        parser.json_documents(text);
    } else {
        parser.yaml_documents(text);
    }
    parser.parsed
}

/// Invalid UTF-8 is reported on the line where it occurs.
pub(crate) fn not_utf8(path: &Arc<str>, bytes: &[u8], valid_up_to: usize) -> Problem {
    let line = line_at(&bytes[..valid_up_to]);
    Problem::file(
        file_origin(path, line),
        format!("not UTF-8 text (invalid byte at line {line}); save the file as UTF-8"),
    )
}

pub(crate) fn file_origin(path: &Arc<str>, line: usize) -> Origin {
    Origin::File {
        path: path.clone(),
        line,
    }
}

fn line_at(prefix: &[u8]) -> usize {
    prefix.iter().filter(|&&b| b == b'\n').count() + 1
}

struct FileParser {
    path: Arc<str>,
    parsed: ParsedFile,
}

impl FileParser {
    fn yaml_documents(&mut self, text: &str) {
        for chunk in split_documents(text) {
            let Some(start_line) = chunk.start_line else {
                continue;
            };
            let lines_before = chunk.first_line - 1;
            match serde_saphyr::from_str::<Value>(chunk.text) {
                Ok(Value::Null) => {}
                Ok(value) => {
                    let item_lines = || {
                        list_item_lines(chunk.text)
                            .into_iter()
                            .map(|line| line + lines_before)
                            .collect()
                    };
                    let text = DocumentText::Yaml {
                        text: chunk.text,
                        lines_before,
                    };
                    self.document(value, start_line, item_lines, text);
                }
                Err(err) => {
                    let line = err
                        .location()
                        .map(|l| l.line() as usize + lines_before)
                        .unwrap_or(start_line);
                    let message = err.render_with_options(serde_saphyr::render_options! {
                        snippets: SnippetMode::Off,
                        line_offset: lines_before as u64,
                    });
                    self.fail(Problem::file(
                        file_origin(&self.path, line),
                        format!("not valid YAML: {message}; {KEEP_HINT}"),
                    ));
                }
            }
        }
    }

    fn json_documents(&mut self, text: &str) {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        loop {
            let end_of_previous = stream.byte_offset();
            let rest = &text[end_of_previous..];
            let start = end_of_previous + (rest.len() - rest.trim_start().len());
            match stream.next() {
                None => break,
                Some(Ok(value)) => {
                    let line = line_at(&text.as_bytes()[..start]);
                    let document = DocumentText::Json {
                        text: &text[start..stream.byte_offset()],
                        lines_before: line - 1,
                    };
                    // serde_json keeps no positions, so list items are reported at the list.
                    self.document(value, line, Vec::new, document);
                }
                Some(Err(err)) => {
                    let line = if err.line() > 0 {
                        err.line()
                    } else {
                        line_at(&text.as_bytes()[..start])
                    };
                    self.fail(Problem::file(
                        file_origin(&self.path, line),
                        format!("not valid JSON: {err}; {KEEP_HINT}"),
                    ));
                    break;
                }
            }
        }
    }

    /// A document is one object or a `List` of them (`kubectl get -o yaml` writes those).
    fn document(
        &mut self,
        value: Value,
        line: usize,
        item_lines: impl FnOnce() -> Vec<usize>,
        text: DocumentText<'_>,
    ) {
        let Some(list_kind) = list_kind(&value).map(str::to_string) else {
            self.object(value, line, text);
            return;
        };
        let api_version = value.get("apiVersion").cloned();
        let Value::Object(mut list) = value else {
            return;
        };
        let Some(Value::Array(items)) = list.remove("items") else {
            return;
        };
        let lines = item_lines();
        // Typed lists (`IngressList`) may leave kind and apiVersion out of their items.
        let item_kind = list_kind
            .strip_suffix("List")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        for (index, mut item) in items.into_iter().enumerate() {
            if let (Some(kind), Value::Object(fields)) = (&item_kind, &mut item) {
                fields
                    .entry("kind")
                    .or_insert_with(|| Value::String(kind.clone()));
                if let Some(api_version) = &api_version {
                    fields
                        .entry("apiVersion")
                        .or_insert_with(|| api_version.clone());
                }
            }
            let line = lines.get(index).copied().unwrap_or(line);
            self.object(item, line, DocumentText::Unknown);
        }
    }

    fn object(&mut self, value: Value, line: usize, text: DocumentText<'_>) {
        let origin = file_origin(&self.path, line);
        // Decoding consumes the document; what a report about it needs is taken first.
        let fingerprint = fingerprint_of(&value);
        let field = |name| value.get(name).and_then(Value::as_str).map(str::to_string);
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let foreign = is_foreign(&value);
        let named = object_ref(&value);
        match StoredObject::from_value(value) {
            Ok(Some(object)) => {
                let key = (object.kind(), ObjectStore::key_of(&object));
                let defined = FileObject {
                    object: Held::Decoded(Box::new(object)),
                    fingerprint,
                    origin,
                };
                if let Some(earlier) = self.parsed.objects.insert(key.clone(), defined) {
                    self.parsed.problems.push(
                        Problem::warning(
                            key.1.object_ref(key.0),
                            format!(
                                "defined twice in this file (also at {}); the later definition is used; remove one of them",
                                earlier.origin
                            ),
                        )
                        .from_origin(Some(file_origin(&self.path, line))),
                    );
                }
            }
            Ok(None) => {
                tracing::debug!(
                    origin = %origin,
                    api_version = api_version.as_deref().unwrap_or(""),
                    kind = kind.as_deref().unwrap_or(""),
                    "ignoring a manifest of a kind Sluice does not read"
                );
            }
            Err(DecodeError::MissingField(_)) if foreign => {
                tracing::debug!(
                    origin = %origin,
                    "ignoring a manifest of a kind Sluice does not read (it also lacks a field Kubernetes requires)"
                );
            }
            Err(err) => {
                let origin = match &err {
                    DecodeError::Schema {
                        api_version, kind, ..
                    } => text
                        .error_line(api_version, kind)
                        .map(|line| file_origin(&self.path, line))
                        .unwrap_or(origin),
                    DecodeError::MissingField(_) => origin,
                };
                let reason = format!("{err}; {KEEP_HINT}");
                let problem = match named {
                    Some(object) => Problem::rejected(object, reason).from_origin(Some(origin)),
                    None => Problem::file(origin, reason),
                };
                self.fail(problem);
            }
        }
    }

    fn fail(&mut self, problem: Problem) {
        self.parsed.failed = true;
        self.parsed.problems.push(problem);
    }
}

/// A content hash of a document. serde_json's maps are sorted, so equal documents serialize
/// equally whatever their key order in the file.
fn fingerprint_of(value: &Value) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    struct HashWriter(DefaultHasher);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = HashWriter(DefaultHasher::new());
    // Writing into a hasher cannot fail; a Value always serializes.
    let _ = serde_json::to_writer(&mut writer, value);
    writer.0.finish()
}

/// The kind of a list document (`List`, `IngressList`, ...), if this is one.
fn list_kind(value: &Value) -> Option<&str> {
    let kind = value.get("kind")?.as_str()?;
    (kind.ends_with("List") && value.get("items").is_some_and(Value::is_array)).then_some(kind)
}

/// The kinds Sluice reads, by the `kind` field alone.
fn read_kind(kind: &str) -> Option<ObjectKind> {
    Some(match kind {
        "Ingress" => ObjectKind::Ingress,
        "IngressClass" => ObjectKind::IngressClass,
        "Service" => ObjectKind::Service,
        "EndpointSlice" => ObjectKind::EndpointSlice,
        "Endpoints" => ObjectKind::Endpoints,
        "Secret" => ObjectKind::Secret,
        "ConfigMap" => ObjectKind::ConfigMap,
        "IngressCheckSum" => ObjectKind::IngressCheckSum,
        "SecretCheckSum" => ObjectKind::SecretCheckSum,
        _ => return None,
    })
}

/// A document that names a kind Sluice does not read, such as a `kustomization.yaml`, which
/// has no `metadata.name`: not Sluice's to judge.
fn is_foreign(value: &Value) -> bool {
    value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| read_kind(kind).is_none())
}

/// Names the object of a document that failed to decode, when it says enough to be named.
fn object_ref(value: &Value) -> Option<ObjectRef> {
    let kind = read_kind(value.get("kind")?.as_str()?)?;
    let name = value.pointer("/metadata/name")?.as_str()?;
    let namespace = match kind {
        ObjectKind::IngressClass => "",
        _ => value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default"),
    };
    Some(ObjectRef::new(kind, namespace, name))
}

/// The lines (relative to the document) where the items of a list document start.
fn list_item_lines(document: &str) -> Vec<usize> {
    #[derive(Deserialize)]
    struct ListItems {
        items: Vec<Spanned<IgnoredAny>>,
    }
    serde_saphyr::from_str::<ListItems>(document)
        .map(|list| {
            list.items
                .iter()
                .map(|item| item.defined.line() as usize)
                .collect()
        })
        .unwrap_or_default()
}

/// One YAML document's text, cut out of its file.
#[derive(Debug, PartialEq, Eq)]
struct Chunk<'a> {
    text: &'a str,
    /// The file line of `text`'s first line.
    first_line: usize,
    /// The file line of the document's first content (not a comment, blank or directive);
    /// `None` for an empty document.
    start_line: Option<usize>,
}

/// Cuts a YAML stream at its document markers. Each document is parsed on its own so that
/// every one gets its own start line and one broken document does not hide the others'
/// errors. A `---` or `...` at column 0 is always a marker (YAML forbids it inside content,
/// even in block scalars), so cutting there is exact.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut chunk_start = 0;
    let mut first_line = 1;
    let mut has_marker = false;
    let mut start_line = None;
    let mut offset = 0;
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end_matches(['\n', '\r']);
        if let Some(rest) = after_marker(line, "---") {
            // Directives and comments before the first marker belong to its document.
            if has_marker || start_line.is_some() {
                chunks.push(Chunk {
                    text: &text[chunk_start..offset],
                    first_line,
                    start_line,
                });
                chunk_start = offset;
                first_line = line_no;
                start_line = None;
            }
            has_marker = true;
            if has_content(rest) {
                start_line = Some(line_no);
            }
        } else if after_marker(line, "...").is_some() {
            let end = offset + raw.len();
            chunks.push(Chunk {
                text: &text[chunk_start..end],
                first_line,
                start_line,
            });
            chunk_start = end;
            first_line = line_no + 1;
            has_marker = false;
            start_line = None;
        } else if start_line.is_none() && has_content(line) && !line.starts_with('%') {
            start_line = Some(line_no);
        }
        offset += raw.len();
    }
    chunks.push(Chunk {
        text: &text[chunk_start..],
        first_line,
        start_line,
    });
    chunks.retain(|chunk| chunk.start_line.is_some());
    chunks
}

fn after_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.strip_prefix(marker)
        .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn has_content(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && !text.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(text: &str) -> Vec<(usize, Option<usize>)> {
        split_documents(text)
            .iter()
            .map(|c| (c.first_line, c.start_line))
            .collect()
    }

    #[test]
    fn documents_are_cut_at_markers_and_start_at_their_first_content() {
        let text = "# header\n\napiVersion: v1\n---\n# comment\nkind: A\n--- {a: 1}\n---\n---\n# only a comment\n";
        assert_eq!(starts(text), vec![(1, Some(3)), (4, Some(6)), (7, Some(7))]);
        let cut = split_documents(text);
        assert_eq!(cut[1].text, "---\n# comment\nkind: A\n");
    }

    #[test]
    fn directives_stay_with_their_document_and_end_markers_end_it() {
        assert_eq!(
            starts("%YAML 1.2\n---\na: 1\n...\n%YAML 1.2\n---\nb: 2\n"),
            vec![(1, Some(3)), (5, Some(7))]
        );
        assert_eq!(
            starts("a: 1\r\n---\r\nb: 2\r\n"),
            vec![(1, Some(1)), (2, Some(3))]
        );
    }

    #[test]
    fn markers_need_column_zero_and_a_separator() {
        assert_eq!(
            starts("a: |\n  ---\n  x\nb: ---x\n----\n"),
            vec![(1, Some(1))]
        );
    }

    #[test]
    fn list_items_get_their_own_lines() {
        let path: Arc<str> = "l.yaml".into();
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
- apiVersion: v1
  kind: Service
  metadata: {name: b}
";
        let parsed = parse_file(&path, text, false);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let lines: Vec<String> = parsed
            .objects
            .values()
            .map(|o| o.origin.to_string())
            .collect();
        assert_eq!(lines, vec!["l.yaml:4", "l.yaml:7"]);
    }

    #[test]
    fn typed_lists_lend_their_kind_to_items() {
        let path: Arc<str> = "l.json".into();
        let text = r#"{"apiVersion": "v1", "kind": "ServiceList",
 "items": [{"metadata": {"name": "a", "namespace": "shop"}}]}"#;
        let parsed = parse_file(&path, text, true);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let key = (ObjectKind::Service, NamespacedName::new("shop", "a"));
        assert_eq!(parsed.objects[&key].origin.to_string(), "l.json:1");
    }

    #[test]
    fn bad_documents_are_named_when_they_can_be() {
        let path: Arc<str> = "b.yaml".into();
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: ok}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  rules: nope
---
kind: Service
";
        let parsed = parse_file(&path, text, false);
        assert!(parsed.failed);
        assert_eq!(parsed.objects.len(), 1);
        let shown: Vec<String> = parsed.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("b.yaml:11: Ingress shop/web rejected: "),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("b.yaml:13: file rejected: missing `apiVersion`"),
            "{}",
            shown[1]
        );
    }

    #[test]
    fn schema_errors_point_at_the_offending_line() {
        let path: Arc<str> = "s.json".into();
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"a\"}}\n\n{\"apiVersion\": \"v1\", \"kind\": \"Service\",\n \"metadata\": {\"name\": \"b\"},\n \"spec\": {\"ports\": [{\"port\": \"eighty\"}]}}\n";
        let parsed = parse_file(&path, text, true);
        let shown: Vec<String> = parsed.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("s.json:5: Service default/b rejected: "),
            "{}",
            shown[0]
        );
    }

    #[test]
    fn foreign_documents_without_a_name_are_ignored() {
        let path: Arc<str> = "kustomization.yaml".into();
        let text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n";
        let parsed = parse_file(&path, text, false);
        assert!(!parsed.failed);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let nameless_ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: {}\n";
        assert!(parse_file(&path, nameless_ingress, false).failed);
    }

    #[test]
    fn json_errors_carry_their_line() {
        let path: Arc<str> = "j.json".into();
        let parsed = parse_file(&path, "{\n  \"kind\": \"Service\",\n  oops\n}\n", true);
        assert!(parsed.failed);
        assert_eq!(
            parsed.problems[0].origin,
            Some(file_origin(&path, 3)),
            "{}",
            parsed.problems[0]
        );
    }
}
