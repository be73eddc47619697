//! Ingress v1 path matching: Exact, element-wise Prefix, and (per Ingress, opt-in) regex.

use regex::Regex;
use serde::Serialize;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PathKind {
    Exact,
    Prefix,
    Regex,
}

impl PathKind {
    /// At equal path length Exact is tried before Prefix, Prefix before regex.
    fn rank(self) -> u8 {
        match self {
            PathKind::Exact => 0,
            PathKind::Prefix => 1,
            PathKind::Regex => 2,
        }
    }
}

/// A compiled path matcher.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Whole path equal, case-sensitive.
    Exact(String),
    /// Element-wise prefix. `trimmed` is the rule path without its trailing `/` (so `/` becomes
    /// the empty string, which matches every path).
    Prefix { path: String, trimmed: String },
    /// Case-insensitive regex anchored at the start (ingress-nginx's `~* ^path`).
    Regex { pattern: String, regex: Regex },
}

impl PathMatch {
    pub fn exact(path: impl Into<String>) -> Self {
        PathMatch::Exact(path.into())
    }

    pub fn prefix(path: impl Into<String>) -> Self {
        let path = path.into();
        let trimmed = path.trim_end_matches('/').to_string();
        PathMatch::Prefix { path, trimmed }
    }

    /// Compiles `pattern` as ingress-nginx does for `use-regex`: `(?i)^pattern`.
    pub fn regex(pattern: impl Into<String>) -> Result<Self, regex::Error> {
        let pattern = pattern.into();
        let regex = Regex::new(&format!("(?i)^(?:{pattern})"))?;
        Ok(PathMatch::Regex { pattern, regex })
    }

    pub fn kind(&self) -> PathKind {
        match self {
            PathMatch::Exact(_) => PathKind::Exact,
            PathMatch::Prefix { .. } => PathKind::Prefix,
            PathMatch::Regex { .. } => PathKind::Regex,
        }
    }

    /// The path as the user wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) => p,
            PathMatch::Prefix { path, .. } => path,
            PathMatch::Regex { pattern, .. } => pattern,
        }
    }

    /// Does this rule match the request path (no query string)?
    pub fn matches(&self, request_path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == request_path,
            PathMatch::Prefix { trimmed, .. } => {
                match request_path.strip_prefix(trimmed.as_str()) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
            PathMatch::Regex { regex, .. } => regex.is_match(request_path),
        }
    }

    /// Match order within a host: longest rule path first; at equal length Exact, then Prefix,
    /// then regex; then the path text, so the order never depends on input order.
    pub fn match_order(&self, other: &PathMatch) -> Ordering {
        other
            .as_str()
            .len()
            .cmp(&self.as_str().len())
            .then(self.kind().rank().cmp(&other.kind().rank()))
            .then_with(|| self.as_str().cmp(other.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_is_whole_path_and_case_sensitive() {
        let m = PathMatch::exact("/foo");
        assert!(m.matches("/foo"));
        assert!(!m.matches("/foo/"));
        assert!(!m.matches("/FOO"));
        assert!(!m.matches("/bar"));
        assert!(!PathMatch::exact("/foo/").matches("/foo"));
    }

    #[test]
    fn prefix_is_element_wise() {
        let m = PathMatch::prefix("/aaa/bbb");
        for yes in ["/aaa/bbb", "/aaa/bbb/", "/aaa/bbb/ccc"] {
            assert!(m.matches(yes), "{yes}");
        }
        assert!(!m.matches("/aaa/bbbxyz"));
        assert!(!PathMatch::prefix("/aaa/bb").matches("/aaa/bbb"));
        for rule in ["/foo", "/foo/"] {
            let m = PathMatch::prefix(rule);
            assert!(m.matches("/foo") && m.matches("/foo/"), "{rule}");
        }
        assert!(PathMatch::prefix("/").matches("/anything/at/all"));
        assert!(PathMatch::prefix("/").matches("/"));
    }

    #[test]
    fn regex_is_anchored_and_case_insensitive() {
        let m = PathMatch::regex("/api/v[0-9]+").unwrap();
        assert!(m.matches("/API/V2/users"));
        assert!(!m.matches("/x/api/v2"));
        assert!(PathMatch::regex("/(unclosed").is_err());
    }

    #[test]
    fn longer_paths_sort_first_and_exact_beats_prefix() {
        let mut v = [
            PathMatch::prefix("/foo"),
            PathMatch::prefix("/"),
            PathMatch::exact("/foo"),
            PathMatch::prefix("/foo/bar"),
        ];
        v.sort_by(|a, b| a.match_order(b));
        let order: Vec<_> = v.iter().map(|m| (m.kind(), m.as_str())).collect();
        assert_eq!(
            order,
            vec![
                (PathKind::Prefix, "/foo/bar"),
                (PathKind::Exact, "/foo"),
                (PathKind::Prefix, "/foo"),
                (PathKind::Prefix, "/"),
            ]
        );
    }
}
