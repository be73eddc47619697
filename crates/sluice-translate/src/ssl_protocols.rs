//! `ssl-protocols`: the TLS versions one host accepts, enforced at the handshake.

use sluice_model::TlsVersions;

/// Parses a space-separated list as Tengine-Ingress reads it. TLS 1.2 and 1.3 are what Sluice
/// speaks; the older and datagram names are accepted and ignored (no client can negotiate them
/// with Sluice anyway). A list naming none of the two is an error, since the host could then
/// never complete a handshake.
pub fn parse_ssl_protocols(value: &str) -> Result<TlsVersions, String> {
    let mut versions = TlsVersions {
        tls12: false,
        tls13: false,
    };
    for name in value.split_whitespace() {
        match name {
            "TLSv1.2" => versions.tls12 = true,
            "TLSv1.3" => versions.tls13 = true,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" | "DTLSv1" | "DTLSv1.2" | "NTLS" => {}
            other => {
                return Err(format!(
                    "`{other}` is not a TLS protocol name; use a space-separated list of \
                     TLSv1.2 and TLSv1.3"
                ));
            }
        }
    }
    if !versions.tls12 && !versions.tls13 {
        return Err(format!(
            "`{}` allows no version Sluice speaks, so no client could connect; list TLSv1.2 \
             and/or TLSv1.3",
            value.trim()
        ));
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_names() {
        assert_eq!(
            parse_ssl_protocols("TLSv1.2"),
            Ok(TlsVersions {
                tls12: true,
                tls13: false
            })
        );
        assert_eq!(
            parse_ssl_protocols(" TLSv1 TLSv1.1  TLSv1.3 "),
            Ok(TlsVersions {
                tls12: false,
                tls13: true
            })
        );
        assert!(parse_ssl_protocols("TLSv1.1").is_err());
        assert!(parse_ssl_protocols("tls1.3").is_err());
        assert!(parse_ssl_protocols("").is_err());
    }
}
