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
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
const X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
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

    fn proto(&self) -> HeaderValue {
        HeaderValue::from_static(if self.tls { "https" } else { "http" })
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
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    conn: &ConnectionInfo,
    host: Option<HeaderValue>,
    upgrade: bool,
) {
    remove_hop_by_hop_keeping_upgrade(headers, upgrade);
    // The client's `Expect: 100-continue` is answered by this hop (hyper sends the 100 when the
    // body is first read); the upstream receives the body without waiting.
    if headers.keys().any(|name| name == PROXY || name == EXPECT) {
        headers.remove(PROXY);
        headers.remove(EXPECT);
    }
    if let Some(host) = host {
        // The same value as the client's Host; for HTTP/2 it is `:authority`, which has no
        // Host header of its own.
        headers.insert(HOST, host.clone());
        headers.insert(X_FORWARDED_HOST, host);
    }
    // Like ingress-nginx without `use-forwarded-headers`: the client's own claims are replaced,
    // since nothing in front of Sluice is trusted by default.
    headers.insert(X_FORWARDED_FOR, conn.client_ip.clone());
    headers.insert(X_REAL_IP, conn.client_ip.clone());
    headers.insert(X_FORWARDED_PROTO, conn.proto());
    // ingress-nginx sends the scheme under these names too; some applications read them.
    headers.insert(X_FORWARDED_SCHEME, conn.proto());
    headers.insert(X_SCHEME, conn.proto());
    headers.insert(X_FORWARDED_PORT, conn.listener_port.clone());
    headers
        .entry(X_REQUEST_ID)
        .or_insert_with(request_id::generate);
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
        );
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
        to_upstream(&mut h, &conn, None, true);
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
}
