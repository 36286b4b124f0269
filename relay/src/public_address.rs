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
//! The client's address (for the audit log) is the connection's peer, or behind
//! trusted proxies the nearest address of the forwarding chain that is not one of
//! them ([`PublicAddress::client`]).
//!
//! Forwarding headers from any other peer are ignored: a client must not choose
//! where other clients are sent, nor what address its requests are recorded with. A host, scheme or prefix that is not well formed
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

    /// The address of the client whose request came from `peer`: `peer` itself
    /// unless it is a trusted proxy; behind trusted proxies, the forwarding chain
    /// (`Forwarded: for=` elements, else `X-Forwarded-For`) walked from the
    /// nearest hop outward gives the first address that is not a trusted proxy.
    /// Everything left of that address was written by the client and is not
    /// believed. A hop that names no address (`unknown`, an obfuscated name, a
    /// malformed value) ends the walk at the last address known; a chain of
    /// trusted proxies only gives its first address.
    pub(crate) fn client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_for(headers).into_iter().rev() {
            let Some(hop) = hop else {
                return client;
            };
            client = hop.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    fn resolve(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.clone());
        }
        let own_host = header(headers, HOST.as_str())
            .filter(|h| valid_host(h))
            .map(str::to_owned);
        let trusted = peer.is_some_and(|ip| self.trusts(ip.to_canonical()));
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

/// The longest forwarding chain read; a longer one is cut at its nearest hops.
const MAX_HOPS: usize = 64;

/// The forwarding chain from the client outward to the nearest proxy: the `for=`
/// of every `Forwarded` element when that header is present, else every
/// `X-Forwarded-For` entry; `None` for a hop that names no address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let (name, rfc7239) = if headers.contains_key("forwarded") {
        ("forwarded", true)
    } else {
        ("x-forwarded-for", false)
    };
    let mut hops: Vec<Option<IpAddr>> = headers
        .get_all(name)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(Some).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .map(|element| {
            let element = element?;
            let node = if rfc7239 {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then_some(value)
                })?
            } else {
                element
            };
            node_address(node)
        })
        .collect();
    if hops.len() > MAX_HOPS {
        hops.drain(..hops.len() - MAX_HOPS);
    }
    hops
}

/// The address of a forwarding node: `192.0.2.43`, `"192.0.2.43:47011"`,
/// `"[2001:db8::17]:4711"` or a bare IPv6 address; `None` for `unknown`, an
/// obfuscated identifier (`_hidden`) or anything else.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Some(rest) = node.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return port_ok
            .then(|| address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    let (address, port) = node.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then(|| address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
        .flatten()
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let address = behind(&["10.0.0.0/8"]);
        let spoofed = headers(&[
            ("x-forwarded-for", "203.0.113.66"),
            ("forwarded", "for=203.0.113.67"),
        ]);
        // A client's own forwarding headers change nothing.
        assert_eq!(address.client(&spoofed, ip("192.0.2.9")), ip("192.0.2.9"));
        // No proxies trusted: never believed, whoever sends them.
        assert_eq!(behind(&[]).client(&spoofed, ip("10.1.2.3")), ip("10.1.2.3"));
        // A trusted proxy's header names the client.
        let h = headers(&[("x-forwarded-for", "192.0.2.9")]);
        assert_eq!(address.client(&h, ip("10.1.2.3")), ip("192.0.2.9"));
        assert_eq!(
            address.client(&h, ip("::ffff:10.1.2.3")),
            ip("192.0.2.9"),
            "an IPv4 proxy seen as IPv6"
        );
        // Without a header, the proxy is all there is.
        assert_eq!(
            address.client(&HeaderMap::new(), ip("10.1.2.3")),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_nearest_hop_and_what_the_client_wrote_is_not_believed() {
        let address = behind(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        for (pairs, client) in [
            // The client prepended a lie; the trusted proxies appended the truth.
            (
                vec![("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2")],
                "198.51.100.7",
            ),
            // The same over two header lines.
            (
                vec![
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
                ],
                "198.51.100.7",
            ),
            // Forwarded wins over X-Forwarded-For; quoted, ports, IPv6 brackets.
            (
                vec![
                    ("x-forwarded-for", "203.0.113.1"),
                    (
                        "forwarded",
                        "for=1.2.3.4, for=\"[2001:db8::17]:4711\";proto=https, for=\"10.0.0.9:443\"",
                    ),
                ],
                "2001:db8::17",
            ),
            (
                vec![("forwarded", "for=\"198.51.100.7:47011\"")],
                "198.51.100.7",
            ),
            (vec![("forwarded", "For=198.51.100.8")], "198.51.100.8"),
            // An unknown or obfuscated hop ends the walk at the last known address.
            (
                vec![("forwarded", "for=198.51.100.7, for=unknown, for=10.0.0.3")],
                "10.0.0.3",
            ),
            (
                vec![("x-forwarded-for", "198.51.100.7, _hidden")],
                "10.1.2.3",
            ),
            (vec![("x-forwarded-for", "not an address")], "10.1.2.3"),
            // Only trusted proxies: the first of them.
            (vec![("x-forwarded-for", "10.0.0.1, 10.0.0.2")], "10.0.0.1"),
        ] {
            assert_eq!(
                address.client(&headers(&pairs), ip("10.1.2.3")),
                ip(client),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn a_long_chain_is_read_from_its_nearest_hops_only() {
        let address = behind(&["10.0.0.0/8"]);
        let mut chain = vec!["198.51.100.1".to_owned(); 1000];
        chain.push("198.51.100.2".to_owned());
        let h = headers(&[("x-forwarded-for", &chain.join(","))]);
        assert_eq!(forwarded_for(&h).len(), MAX_HOPS);
        assert_eq!(address.client(&h, ip("10.1.2.3")), ip("198.51.100.2"));
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
