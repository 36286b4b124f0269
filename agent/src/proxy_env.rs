//! Which HTTP proxy the agent dials the relay through: `proxy_url` from
//! `agent.toml` when it is set (`""` or `"none"`: no proxy, whatever the
//! environment says), else the usual environment variables — for a `wss://` relay
//! `https_proxy`, `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY`; for `ws://`
//! `http_proxy`, `HTTP_PROXY`, then the `all_proxy` pair — unless the relay's host
//! matches `no_proxy` / `NO_PROXY`.
//!
//! `NO_PROXY` is a comma-separated list as curl reads it: `*` (no proxy at all),
//! host names that match themselves and their subdomains (a leading `.` or `*.`
//! is ignored), IP addresses, and networks (`10.0.0.0/8`); an entry may end with
//! `:port`, then it matches that port only.
//!
//! A proxy URL from the environment may hold Basic credentials
//! (`http://user:password@proxy:3128`, percent-encoded); they are used for the
//! `CONNECT` and never logged. Only `http://` proxies are supported.

use std::net::IpAddr;

use sapbridge_proto::Secret;

/// A proxy chosen from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvProxy {
    /// The variable it came from (`HTTPS_PROXY`).
    pub(crate) variable: &'static str,
    /// `host:port`.
    pub(crate) address: String,
    /// The user and password in the URL, percent-decoded (masked in `Debug`).
    pub(crate) credentials: Option<(String, Secret)>,
}

/// Whether `proxy_url` in `agent.toml` turns the proxy off.
pub(crate) fn disables(proxy_url: &str) -> bool {
    let value = proxy_url.trim();
    value.is_empty() || value.eq_ignore_ascii_case("none")
}

/// The proxy the environment names for `relay_url`, if any; `env` reads a
/// variable (`std::env::var` in the agent, a map in tests).
///
/// # Errors
/// A proxy URL that cannot be used, naming its variable (never its credentials).
pub(crate) fn from_environment(
    relay_url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<EnvProxy>, String> {
    let Ok(relay) = url::Url::parse(relay_url) else {
        return Ok(None);
    };
    let secure = relay.scheme() == "wss";
    let names: [&'static str; 4] = if secure {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    let Some((variable, value)) = names.into_iter().find_map(|name| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    }) else {
        return Ok(None);
    };
    let host = relay.host_str().unwrap_or_default();
    let port = relay.port_or_known_default().unwrap_or(443);
    let no_proxy = env("no_proxy")
        .or_else(|| env("NO_PROXY"))
        .unwrap_or_default();
    if bypasses(&no_proxy, host, port) {
        return Ok(None);
    }
    parse(variable, value.trim()).map(Some)
}

fn parse(variable: &'static str, value: &str) -> Result<EnvProxy, String> {
    let unusable = |why: &str| format!("{variable} is not a usable proxy URL: {why}");
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| unusable(&e.to_string()))?;
    if url.scheme() != "http" {
        return Err(unusable(&format!(
            "the scheme {}:// is not supported, only http:// (CONNECT)",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| unusable("no host"))?;
    let address = format!("{host}:{}", url.port().unwrap_or(80));
    let credentials = if url.username().is_empty() {
        None
    } else {
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Some((
            decode(url.username()),
            Secret::new(decode(url.password().unwrap_or_default())),
        ))
    };
    Ok(EnvProxy {
        variable,
        address,
        credentials,
    })
}

/// Whether `host:port` matches a `NO_PROXY` list.
fn bypasses(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (pattern, wanted_port) = split_port(entry);
            if wanted_port.is_some_and(|p| p != port) {
                return false;
            }
            if let Some(ip) = ip {
                if let Ok(network) = pattern.parse::<ipnet::IpNet>() {
                    return network.contains(&ip);
                }
                return pattern.parse::<IpAddr>().is_ok_and(|p| p == ip);
            }
            let domain = pattern
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            !domain.is_empty()
                && (host == domain
                    || host
                        .strip_suffix(&domain)
                        .is_some_and(|rest| rest.ends_with('.')))
        })
}

/// `host:port` into its parts; IPv6 addresses and networks keep their colons.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        // [::1]:8443 or [::1]
        if let Some((address, after)) = rest.split_once(']') {
            return (
                address,
                after.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const WSS: &str = "wss://relay.example.com/v1/agent/connect";

    #[test]
    fn the_scheme_picks_the_variable_and_credentials_are_decoded() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://corp%5Cme:p%40ss+w@proxy.corp:3128"),
            ("HTTP_PROXY", "plain:8080"),
        ]);
        let proxy = from_environment(WSS, &vars).unwrap().unwrap();
        assert_eq!(proxy.variable, "HTTPS_PROXY");
        assert_eq!(proxy.address, "proxy.corp:3128");
        let (user, password) = proxy.credentials.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("corp\\me", "p@ss+w"));
        assert!(!format!("{proxy:?}").contains("p@ss"), "{proxy:?}");
        let plain = from_environment("ws://relay:8080/v1/agent/connect", &vars)
            .unwrap()
            .unwrap();
        assert_eq!(
            (plain.variable, plain.address.as_str()),
            ("HTTP_PROXY", "plain:8080")
        );
        // Lower case first, then ALL_PROXY.
        let vars = env(&[("https_proxy", "http://a:1"), ("HTTPS_PROXY", "http://b:2")]);
        assert_eq!(
            from_environment(WSS, &vars).unwrap().unwrap().address,
            "a:1"
        );
        let vars = env(&[("ALL_PROXY", "http://all:3")]);
        let all = from_environment(WSS, &vars).unwrap().unwrap();
        assert_eq!((all.variable, all.address.as_str()), ("ALL_PROXY", "all:3"));
        assert_eq!(from_environment(WSS, env(&[])).unwrap(), None);
        let error =
            from_environment(WSS, env(&[("HTTPS_PROXY", "socks5://u:secret@s:1080")])).unwrap_err();
        assert!(
            error.contains("HTTPS_PROXY") && !error.contains("secret"),
            "{error}"
        );
    }

    #[test]
    fn no_proxy_matches_hosts_domains_addresses_networks_and_ports() {
        let cases = [
            ("*", "relay.example.com", 443, true),
            ("example.com", "relay.example.com", 443, true),
            (".example.com", "relay.example.com", 443, true),
            ("*.example.com", "example.com", 443, true),
            ("ample.com", "relay.example.com", 443, false),
            (
                "other.org, relay.example.com:443",
                "relay.example.com",
                443,
                true,
            ),
            ("relay.example.com:8443", "relay.example.com", 443, false),
            ("10.0.0.0/8", "10.1.2.3", 443, true),
            ("10.0.0.0/8", "11.1.2.3", 443, false),
            ("127.0.0.1", "127.0.0.1", 8080, true),
            ("::1", "[::1]", 443, true),
            ("[::1]:443", "[::1]", 443, true),
            ("", "relay.example.com", 443, false),
        ];
        for (list, host, port, want) in cases {
            assert_eq!(
                bypasses(list, host, port),
                want,
                "{list:?} vs {host}:{port}"
            );
        }
        let vars = env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "example.com")]);
        assert_eq!(from_environment(WSS, &vars).unwrap(), None);
    }

    #[test]
    fn empty_and_none_disable() {
        assert!(disables("") && disables(" none ") && disables("NONE"));
        assert!(!disables("http://proxy:3128"));
    }
}
