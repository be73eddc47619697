//! Header rules between client and upstream: hop-by-hop headers stay on their hop, the upstream
//! learns who the client is (`X-Forwarded-*`, `X-Real-IP`, `X-Request-ID`), and `Proxy` is
//! dropped (httpoxy).

use crate::request_id;
use http::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, TE, TRAILER};
use http::header::{TRANSFER_ENCODING, UPGRADE};
use std::net::SocketAddr;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const PROXY: HeaderName = HeaderName::from_static("proxy");
const EXPECT: HeaderName = HeaderName::from_static("expect");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");

/// What every request of one client connection shares, computed once per connection.
pub(crate) struct ConnectionInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    /// The negotiated TLS version and cipher suite, for the access log.
    pub(crate) tls_version: Option<&'static str>,
    pub(crate) tls_cipher: Option<&'static str>,
    client_ip: HeaderValue,
    listener_port: HeaderValue,
}

impl ConnectionInfo {
    pub(crate) fn new(peer: SocketAddr, listener_port: u16, tls: bool) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        ConnectionInfo {
            peer,
            tls,
            tls_version: None,
            tls_cipher: None,
            client_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            listener_port: HeaderValue::from(listener_port),
        }
    }

    /// The client's IP address as sent upstream (`X-Real-IP`).
    pub(crate) fn client_ip(&self) -> &HeaderValue {
        &self.client_ip
    }

    /// Notes what the TLS handshake negotiated (nginx's `$ssl_protocol` and `$ssl_cipher`).
    pub(crate) fn with_tls_session(mut self, session: &rustls::ServerConnection) -> Self {
        self.tls_version = session.protocol_version().and_then(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            other => other.as_str(),
        });
        self.tls_cipher = session
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str());
        self
    }

    fn proto(&self) -> &'static HeaderValue {
        static HTTPS: HeaderValue = HeaderValue::from_static("https");
        static HTTP: HeaderValue = HeaderValue::from_static("http");
        if self.tls { &HTTPS } else { &HTTP }
    }
}

/// An HTTP/1.1 `Upgrade` request (WebSocket and others): `Connection: upgrade` plus `Upgrade`.
///
/// `Upgrade: h2c` is never passed on: a tunnelled HTTP/2 connection would let the client send
/// requests the proxy never routes ("h2c smuggling"). Such requests go upstream as plain ones.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .is_some_and(|protocol| !has_token(protocol, "h2c"))
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Removes hop-by-hop headers: the fixed list and every header the `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of these, and removing by name
    // hashes the name even when it is absent (measured: ~2,500 instructions per proxied request).
    let mut connection = false;
    let mut fixed = false;
    for name in headers.keys() {
        match name.as_str() {
            "connection" => connection = true,
            "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding"
            | "upgrade" => fixed = true,
            _ => {}
        }
    }
    if !connection && !fixed {
        return;
    }
    if connection {
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                // The usual tokens name headers removed below anyway; skip the allocation.
                if ["keep-alive", "close", "upgrade", ""]
                    .iter()
                    .any(|t| token.eq_ignore_ascii_case(t))
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if fixed {
        for name in [
            KEEP_ALIVE,
            PROXY_CONNECTION,
            TE,
            TRAILER,
            TRANSFER_ENCODING,
            UPGRADE,
        ] {
            headers.remove(name);
        }
    }
}

/// Rewrites the client's headers for the upstream. `host` is the client's Host (or HTTP/2
/// `:authority`, which wins as RFC 9113 says); `upgrade` keeps the `Upgrade` header of an upgrade
/// request.
///
/// `Host` and `X-Request-ID` end up in `headers` (the access log and canary actions read them);
/// the headers that say who the client is come back as [`ForwardedFields`], which the request
/// head encoder writes directly: eight `HeaderMap` inserts cost ~2,800 instructions per request.
/// The client's own values of those headers are removed here, so each is sent exactly once.
pub(crate) fn to_upstream<'a>(
    headers: &mut HeaderMap,
    conn: &'a ConnectionInfo,
    host: Option<HeaderValue>,
    upgrade: bool,
) -> ForwardedFields<'a> {
    remove_hop_by_hop_keeping_upgrade(headers, upgrade);
    // One pass over the fields (each value, so several Host fields are counted): removing or
    // looking up by name hashes it even when absent.
    let mut proxy_or_expect = false;
    let mut client_forwarded = false;
    let mut client_forwarded_host = false;
    let mut has_request_id = false;
    let mut host_fields = 0usize;
    for (name, _) in headers.iter() {
        match name.as_str() {
            "proxy" | "expect" => proxy_or_expect = true,
            "x-forwarded-for" | "x-real-ip" | "x-forwarded-proto" | "x-forwarded-scheme"
            | "x-scheme" | "x-forwarded-port" => client_forwarded = true,
            "x-forwarded-host" => client_forwarded_host = true,
            "x-request-id" => has_request_id = true,
            "host" => host_fields += 1,
            _ => {}
        }
    }
    // The client's `Expect: 100-continue` is answered by this hop (hyper sends the 100 when the
    // body is first read); the upstream receives the body without waiting.
    if proxy_or_expect {
        headers.remove(PROXY);
        headers.remove(EXPECT);
    }
    // Like ingress-nginx without `use-forwarded-headers`: the client's own claims are replaced,
    // since nothing in front of Sluice is trusted by default.
    if client_forwarded {
        for name in [
            &X_FORWARDED_FOR,
            &X_REAL_IP,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_SCHEME,
            &X_SCHEME,
            &X_FORWARDED_PORT,
        ] {
            headers.remove(name);
        }
    }
    if let Some(host) = &host {
        // Without a host the client's X-Forwarded-Host passes, as it always did.
        if client_forwarded_host {
            headers.remove(&X_FORWARDED_HOST);
        }
        // An HTTP/1 request's host is its one Host field already; HTTP/2's `:authority` (or
        // an absolute-form target, or several Host fields) needs the insert.
        let unchanged = host_fields == 1 && headers.get(HOST) == Some(host);
        if !unchanged {
            headers.insert(HOST, host.clone());
        }
    }
    if !has_request_id {
        headers.insert(X_REQUEST_ID, request_id::generate());
    }
    ForwardedFields { conn, host }
}

/// The headers that tell the upstream who the client is and how it came in: `X-Forwarded-Host`
/// (when the request has a host), `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`,
/// `X-Forwarded-Scheme`, `X-Scheme` (ingress-nginx sends the scheme under these names too; some
/// applications read them) and `X-Forwarded-Port`.
pub(crate) struct ForwardedFields<'a> {
    conn: &'a ConnectionInfo,
    host: Option<HeaderValue>,
}

impl ForwardedFields<'_> {
    /// The fields as name and value, in the order they are sent.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        let proto = self.conn.proto();
        let host = self.host.as_ref().map(|host| (&X_FORWARDED_HOST, host));
        host.into_iter().chain([
            (&X_FORWARDED_FOR, &self.conn.client_ip),
            (&X_REAL_IP, &self.conn.client_ip),
            (&X_FORWARDED_PROTO, proto),
            (&X_FORWARDED_SCHEME, proto),
            (&X_SCHEME, proto),
            (&X_FORWARDED_PORT, &self.conn.listener_port),
        ])
    }

    /// Puts the fields into `headers`, for the code that must see (or change) them there.
    pub(crate) fn insert_into(self, headers: &mut HeaderMap) {
        for (name, value) in self.fields() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Rewrites the upstream's response headers for the client. A `101 Switching Protocols` keeps
/// its `Upgrade`.
pub(crate) fn to_client(headers: &mut HeaderMap, switching_protocols: bool) {
    remove_hop_by_hop_keeping_upgrade(headers, switching_protocols);
}

/// Removes the hop-by-hop headers; when `keep_upgrade`, the `Upgrade` header survives with a
/// `Connection: upgrade` naming it, as an upgrade needs on both sides of the proxy.
fn remove_hop_by_hop_keeping_upgrade(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(UPGRADE, protocol);
        headers.insert(CONNECTION, UPGRADE_TOKEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy", "http://evil"),
            ("expect", "100-continue"),
            ("x-kept", "yes"),
        ]);
        let conn = ConnectionInfo::new("10.1.2.3:5555".parse().unwrap(), 80, false);
        to_upstream(
            &mut h,
            &conn,
            Some(HeaderValue::from_static("a.com")),
            false,
        )
        .insert_into(&mut h);
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "te",
            "transfer-encoding",
            "proxy",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["host"], "a.com");
    }

    #[test]
    fn upgrade_survives_only_for_upgrade_requests() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        let conn = ConnectionInfo::new("[::ffff:10.0.0.1]:1".parse().unwrap(), 443, true);
        to_upstream(&mut h, &conn, None, true).insert_into(&mut h);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["x-real-ip"], "10.0.0.1");
        let mut h = headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(!is_upgrade_request(&h), "h2c upgrades are not tunnelled");
        to_upstream(&mut h, &conn, None, false);
        assert!(!h.contains_key("upgrade"));
    }

    #[test]
    fn client_claims_leave_the_map_and_come_back_once_from_this_hop() {
        let mut h = headers(&[
            ("host", "a.com"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-scheme", "https"),
            ("x-scheme", "https"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-host", "evil.com"),
            ("x-request-id", "kept"),
            ("x-kept", "yes"),
        ]);
        let conn = ConnectionInfo::new("10.1.2.3:5555".parse().unwrap(), 8080, false);
        let host = h.get(HOST).cloned();
        let forwarded = to_upstream(&mut h, &conn, host, false);
        let sent: Vec<(&str, &str)> = forwarded
            .fields()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            sent,
            [
                ("x-forwarded-host", "a.com"),
                ("x-forwarded-for", "10.1.2.3"),
                ("x-real-ip", "10.1.2.3"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-scheme", "http"),
                ("x-scheme", "http"),
                ("x-forwarded-port", "8080"),
            ]
        );
        let mut left: Vec<(&str, &str)> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ("host", "a.com"),
                ("x-kept", "yes"),
                ("x-request-id", "kept")
            ]
        );

        // Without a host (HTTP/1.0), the client's X-Forwarded-Host passes and none is added.
        let mut h = headers(&[("x-forwarded-host", "b.com")]);
        let forwarded = to_upstream(&mut h, &conn, None, false);
        assert!(forwarded.fields().all(|(n, _)| n != "x-forwarded-host"));
        assert_eq!(h["x-forwarded-host"], "b.com");
        assert_eq!(h["x-request-id"].len(), 32);

        // HTTP/2's `:authority` becomes the Host; several Host fields become one.
        let mut h = headers(&[("host", "c.com"), ("host", "d.com")]);
        let _ = to_upstream(
            &mut h,
            &conn,
            Some(HeaderValue::from_static("c.com")),
            false,
        );
        assert_eq!(h.get_all(HOST).iter().collect::<Vec<_>>(), ["c.com"]);
        let mut h = headers(&[]);
        let _ = to_upstream(
            &mut h,
            &conn,
            Some(HeaderValue::from_static("e.com")),
            false,
        );
        assert_eq!(h[HOST], "e.com");
    }
}
