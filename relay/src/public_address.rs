//! Absolute `Location` headers. Several workflow engines (Node-RED, n8n) follow a
//! `Location` as given, so a path such as `/v1/calls/{id}` sends them to a host
//! named `v1`. `Location`s are absolute when `public_url` or `trusted_proxies` is
//! configured or `absolute_locations` is on (else paths, as before). The base URL
//! comes from, in order:
//! 1. `public_url`, when configured;
//! 2. behind a trusted proxy (the connection's peer is in `trusted_proxies`), the
//!    first `Forwarded` element's `proto` and `host` (RFC 7239), else
//!    `X-Forwarded-Proto` / `X-Forwarded-Host` / `X-Forwarded-Prefix`;
//! 3. the request's own `Host`, with `http` (the relay speaks plain HTTP).
//!
//! Forwarding headers from any other peer are ignored: a client must not choose
//! where other clients are sent. A host, scheme or prefix that is not well formed
//! is ignored too, and the `Location` stays a path rather than become something
//! odd.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HOST;
use ipnet::IpNet;

/// Where the relay is reached from outside, as configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublicAddress {
    /// `public_url` without a trailing slash.
    public_url: Option<String>,
    /// The proxies whose forwarding headers are believed.
    trusted_proxies: Vec<IpNet>,
    /// Whether `Location`s are absolute at all.
    absolute: bool,
}

impl PublicAddress {
    /// From the configuration's `public_url`, (already validated)
    /// `trusted_proxies` and `absolute_locations`.
    pub(crate) fn new(
        public_url: Option<&str>,
        trusted_proxies: &[String],
        absolute_locations: bool,
    ) -> Self {
        Self {
            absolute: absolute_locations || public_url.is_some() || !trusted_proxies.is_empty(),
            public_url: public_url.map(|url| url.trim_end_matches('/').to_owned()),
            trusted_proxies: trusted_proxies
                .iter()
                .filter_map(|p| parse_proxy(p).ok())
                .collect(),
        }
    }

    /// The base URL (`scheme://host[:port][/prefix]`, no trailing slash) that
    /// relative `Location`s of a request with `headers` from `peer` get, if any.
    pub(crate) fn base(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
        if !self.absolute {
            return None;
        }
        self.resolve(headers, peer)
    }

    /// Whether clients reach the relay over `https://` as far as the configuration
    /// tells: its `public_url`, or a trusted proxy's forwarding headers (whether or
    /// not `Location`s are absolute).
    pub(crate) fn https(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
        self.resolve(headers, peer)
            .is_some_and(|base| base.to_ascii_lowercase().starts_with("https://"))
    }

    fn resolve(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.clone());
        }
        let own_host = header(headers, HOST.as_str())
            .filter(|h| valid_host(h))
            .map(str::to_owned);
        let trusted = peer.is_some_and(|ip| {
            let ip = ip.to_canonical();
            self.trusted_proxies.iter().any(|net| net.contains(&ip))
        });
        let (mut scheme, mut host, mut prefix) = ("http", own_host, "");
        if trusted {
            let forwarded = forwarded(headers);
            let proto = forwarded
                .as_ref()
                .and_then(|f| f.proto.as_deref())
                .or_else(|| first(headers, "x-forwarded-proto"));
            match proto.map(str::to_ascii_lowercase).as_deref() {
                Some("https") => scheme = "https",
                Some("http") | None => {}
                Some(_) => return None,
            }
            let forwarded_host = forwarded
                .as_ref()
                .and_then(|f| f.host.as_deref())
                .or_else(|| first(headers, "x-forwarded-host"));
            if let Some(forwarded_host) = forwarded_host {
                host = Some(forwarded_host)
                    .filter(|h| valid_host(h))
                    .map(str::to_owned);
            }
            if let Some(forwarded_prefix) = first(headers, "x-forwarded-prefix") {
                let trimmed = forwarded_prefix.trim_end_matches('/');
                if !valid_prefix(trimmed) {
                    return None;
                }
                prefix = trimmed;
            }
        }
        host.map(|host| format!("{scheme}://{host}{prefix}"))
    }
}

/// Parses a `trusted_proxies` entry: an address (`10.0.0.5`, `::1`) or a network
/// (`10.0.0.0/8`).
///
/// # Errors
/// Why the entry is neither.
pub(crate) fn parse_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{entry:?} is not an IP address or network (such as 10.0.0.0/8)"))
}

/// A header's value, if it is one visible-ASCII value.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?.trim();
    (values.next().is_none() && !value.is_empty()).then_some(value)
}

/// The first of a comma-separated forwarding header's values (the one the
/// proxy nearest the client wrote).
fn first<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// What the first element of `Forwarded` says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Forwarded {
    proto: Option<String>,
    host: Option<String>,
}

fn forwarded(headers: &HeaderMap) -> Option<Forwarded> {
    let value = headers.get("forwarded")?.to_str().ok()?;
    let element = value.split(',').next()?;
    let mut found = Forwarded::default();
    for pair in element.split(';') {
        let Some((key, raw)) = pair.split_once('=') else {
            continue;
        };
        let raw = raw.trim();
        let value = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(raw)
            .to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "proto" => found.proto = Some(value),
            "host" => found.host = Some(value),
            _ => {}
        }
    }
    Some(found)
}

/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    name_ok && port_ok
}

/// A path prefix such as `/sapbridge` or `/tenants/a` (empty: none).
fn valid_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || (prefix.starts_with('/')
            && prefix[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn behind(proxies: &[&str]) -> PublicAddress {
        let proxies: Vec<String> = proxies.iter().map(|p| (*p).to_owned()).collect();
        PublicAddress::new(None, &proxies, true)
    }

    const PROXY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));
    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)));

    #[test]
    fn the_public_url_wins() {
        let address = PublicAddress::new(Some("https://relay.example.com/"), &[], false);
        let h = headers(&[("host", "other:1"), ("x-forwarded-host", "evil")]);
        assert_eq!(
            address.base(&h, CLIENT).as_deref(),
            Some("https://relay.example.com")
        );
    }

    #[test]
    fn paths_unless_configured() {
        let h = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(PublicAddress::new(None, &[], false).base(&h, CLIENT), None);
        assert!(
            PublicAddress::new(None, &["10.0.0.0/8".into()], false)
                .base(&h, CLIENT)
                .is_some(),
            "trusted proxies make them absolute"
        );
    }

    #[test]
    fn the_host_header_without_a_proxy() {
        let h = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(
            behind(&[]).base(&h, CLIENT).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        let h = headers(&[("host", "[::1]:8080")]);
        assert_eq!(
            behind(&[]).base(&h, CLIENT).as_deref(),
            Some("http://[::1]:8080")
        );
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let h = headers(&[
            ("host", "relay.internal:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "sap.example.com"),
            ("x-forwarded-prefix", "/bridge/"),
        ]);
        let address = behind(&["10.0.0.0/8"]);
        assert_eq!(
            address.base(&h, PROXY).as_deref(),
            Some("https://sap.example.com/bridge")
        );
        assert_eq!(
            address.base(&h, CLIENT).as_deref(),
            Some("http://relay.internal:8080"),
            "a client's own forwarding headers are ignored"
        );
        let mapped = Some("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(
            address.base(&h, mapped).as_deref(),
            Some("https://sap.example.com/bridge"),
            "an IPv4 peer seen as IPv6"
        );
    }

    #[test]
    fn forwarded_comes_before_the_x_headers() {
        let h = headers(&[
            ("host", "relay.internal"),
            (
                "forwarded",
                "for=192.0.2.60;proto=https;host=\"sap.example.com:8443\", for=10.0.0.1",
            ),
            ("x-forwarded-host", "ignored.example.com"),
        ]);
        assert_eq!(
            behind(&["10.1.2.3"]).base(&h, PROXY).as_deref(),
            Some("https://sap.example.com:8443")
        );
    }

    #[test]
    fn malformed_values_leave_the_location_relative() {
        let address = behind(&["10.0.0.0/8"]);
        for pairs in [
            vec![("host", "evil.com/path")],
            vec![("host", "user@evil.com")],
            vec![("host", "a b")],
            vec![("host", "host:99999999")],
            vec![("host", "[not-v6]:80")],
            vec![("host", "ok"), ("x-forwarded-host", "evil.com\\@x")],
            vec![("host", "ok"), ("x-forwarded-proto", "javascript")],
            vec![("host", "ok"), ("x-forwarded-prefix", "/../admin")],
            vec![("host", "ok"), ("x-forwarded-prefix", "//evil.com")],
            vec![],
        ] {
            assert_eq!(address.base(&headers(&pairs), PROXY), None, "{pairs:?}");
        }
        // Two Host headers: ambiguous, so none.
        assert_eq!(
            address.base(&headers(&[("host", "a"), ("host", "b")]), CLIENT),
            None
        );
    }

    #[test]
    fn proxies_parse_as_addresses_or_networks() {
        assert!(parse_proxy("10.0.0.0/8").is_ok());
        assert!(parse_proxy("::1").is_ok());
        assert!(parse_proxy("192.168.1.7").is_ok());
        assert!(parse_proxy("proxy.example.com").is_err());
        assert!(parse_proxy("10.0.0.0/33").is_err());
    }
}
