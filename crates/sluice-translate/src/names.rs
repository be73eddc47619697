//! Validation of Ingress hosts and paths.

use regex::Regex;
use sluice_model::PathMatch;
use std::sync::LazyLock;

/// ingress-nginx's `strict-validate-path-type` set, plus `~` and `%` (unreserved and
/// percent-encoded characters are plain path characters).
static STRICT_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^/[A-Za-z0-9._\-/~%]*$").unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// Lower-cases and checks a rule or TLS host: a DNS name, or `*.` followed by one. The error
/// says what to write instead.
pub fn normalize_host(host: &str) -> Result<String, String> {
    let lower = host.trim().to_ascii_lowercase();
    if lower == "*" {
        return Err(
            "a bare `*` host is invalid; omit `host` to match every host, or use `*.example.com`"
                .into(),
        );
    }
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.contains('*') {
        return Err(format!(
            "`{host}`: a wildcard `*` must be the whole first label, as in `*.example.com`, and \
             matches exactly one label"
        ));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !valid {
        return Err(format!(
            "`{host}` is not a DNS name; use lower-case letters, digits, `-` and `.` (no port, no \
             IP address, no trailing dot)"
        ));
    }
    Ok(lower)
}

/// Compiles one Ingress path. `regex` is the Ingress's regex mode; it only affects
/// ImplementationSpecific paths (Exact and Prefix keep their Kubernetes meaning).
pub fn compile_path(path: &str, path_type: &str, regex: bool) -> Result<PathMatch, PathError> {
    match path_type {
        "Exact" | "Prefix" => {
            if !STRICT_PATH.is_match(path) {
                return Err(PathError::Path(format!(
                    "`{path}` is not a valid {path_type} path: it must start with `/` and contain \
                     only letters, digits and `._-/~%`; for a regex use pathType \
                     ImplementationSpecific with nginx.ingress.kubernetes.io/use-regex: \"true\""
                )));
            }
            Ok(if path_type == "Exact" {
                PathMatch::exact(path)
            } else {
                PathMatch::prefix(path)
            })
        }
        "ImplementationSpecific" if regex => PathMatch::regex(path).map_err(|e| {
            PathError::Path(format!(
                "`{path}` is not a valid regex ({}); fix the pattern (it is matched \
                 case-insensitively from the start of the path)",
                regex_reason(&e)
            ))
        }),
        "ImplementationSpecific" => {
            if !path.starts_with('/') {
                return Err(PathError::Path(format!("`{path}` must start with `/`")));
            }
            Ok(PathMatch::prefix(path))
        }
        other => Err(PathError::PathType(format!(
            "`{other}` is not a pathType; use Exact, Prefix or ImplementationSpecific"
        ))),
    }
}

pub enum PathError {
    Path(String),
    PathType(String),
}

/// The regex crate's message shows the wrapped pattern with a caret; the last `error:` line
/// is the part that reads well on one line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_must_be_the_whole_first_label() {
        assert_eq!(normalize_host("*.Foo.com").as_deref(), Ok("*.foo.com"));
        assert!(normalize_host("*").is_err());
        assert!(normalize_host("f*.foo.com").is_err());
        assert!(normalize_host("foo.*.com").is_err());
        assert!(normalize_host("foo.com:80").is_err());
        assert_eq!(normalize_host("FOO.com").as_deref(), Ok("foo.com"));
    }

    #[test]
    fn strict_paths_need_a_leading_slash() {
        assert!(compile_path("foo", "Exact", false).is_err());
        assert!(compile_path("/foo/[a-z]+", "Prefix", true).is_err());
        assert!(compile_path("/foo/[a-z]+", "ImplementationSpecific", true).is_ok());
        assert!(compile_path("/(x", "ImplementationSpecific", true).is_err());
        assert!(compile_path("/x", "Weird", false).is_err());
    }
}
