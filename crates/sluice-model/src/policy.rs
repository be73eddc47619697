//! Options that shape how a request is handled: global defaults (the controller ConfigMap) and
//! the per-route result of an Ingress's annotations over those defaults.

use serde::Serialize;
use std::time::Duration;

/// Global options, as ingress-nginx's controller ConfigMap sets them. Defaults are
/// ingress-nginx's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlobalOptions {
    /// `ssl-redirect`: plain-HTTP requests to TLS hosts are redirected to https.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect even hosts without TLS.
    pub force_ssl_redirect: bool,
    /// `http-redirect-code`.
    pub http_redirect_code: u16,
    /// `hsts`, `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload`.
    pub hsts: bool,
    pub hsts_max_age: u64,
    pub hsts_include_subdomains: bool,
    pub hsts_preload: bool,
    /// `proxy-connect-timeout`, `proxy-send-timeout`, `proxy-read-timeout` (seconds).
    #[serde(with = "secs")]
    pub proxy_connect_timeout: Duration,
    #[serde(with = "secs")]
    pub proxy_send_timeout: Duration,
    #[serde(with = "secs")]
    pub proxy_read_timeout: Duration,
    /// `regex-host-wide`: ingress-nginx's behaviour where `use-regex` on one Ingress of a host
    /// turns every path of that host into a regex.
    pub regex_host_wide: bool,
    /// `trusted-proxies`: peers whose `X-Client-Scheme` header is believed (Tengine-Ingress's
    /// front load balancer telling the original scheme). Empty: nobody is trusted.
    pub trusted_proxies: Vec<crate::net::Cidr>,
}

impl Default for GlobalOptions {
    fn default() -> Self {
        GlobalOptions {
            ssl_redirect: true,
            force_ssl_redirect: false,
            http_redirect_code: 308,
            hsts: true,
            hsts_max_age: 31_536_000,
            hsts_include_subdomains: true,
            hsts_preload: false,
            proxy_connect_timeout: Duration::from_secs(5),
            proxy_send_timeout: Duration::from_secs(60),
            proxy_read_timeout: Duration::from_secs(60),
            regex_host_wide: false,
            trusted_proxies: Vec::new(),
        }
    }
}

impl GlobalOptions {
    /// The `Strict-Transport-Security` value, or `None` when HSTS is off.
    pub fn hsts_header(&self) -> Option<String> {
        if !self.hsts {
            return None;
        }
        let mut v = format!("max-age={}", self.hsts_max_age);
        if self.hsts_include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.hsts_preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}

/// Per-route behaviour: the owning Ingress's annotations applied over [`GlobalOptions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutePolicy {
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    pub redirect_code: u16,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    #[serde(with = "secs")]
    pub send_timeout: Duration,
    #[serde(with = "secs")]
    pub read_timeout: Duration,
    /// `enable-access-log`: `false` keeps this route's requests out of the access log (they are
    /// still counted in the metrics).
    pub enable_access_log: bool,
    /// `disable-robots`: `/robots.txt` is answered by Sluice with "disallow everything".
    pub disable_robots: bool,
}

impl RoutePolicy {
    pub fn from_globals(g: &GlobalOptions) -> Self {
        RoutePolicy {
            ssl_redirect: g.ssl_redirect,
            force_ssl_redirect: g.force_ssl_redirect,
            redirect_code: g.http_redirect_code,
            connect_timeout: g.proxy_connect_timeout,
            send_timeout: g.proxy_send_timeout,
            read_timeout: g.proxy_read_timeout,
            enable_access_log: true,
            disable_robots: false,
        }
    }
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy::from_globals(&GlobalOptions::default())
    }
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
