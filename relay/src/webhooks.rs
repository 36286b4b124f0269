//! Webhooks: which callback URLs the relay may send to, the HTTP client that sends
//! (and refuses non-public addresses at connect time), and the Standard Webhooks
//! signature.
//!
//! A callback URL is a request into a network that a client names, made from
//! inside the relay's network: the classic server-side request forgery. So every
//! URL is checked when a client gives it (scheme, host against
//! `[webhooks] allowed_hosts`, an address literal against the non-public ranges),
//! and again at every attempt, where the client resolves the name itself and
//! refuses it if any address it resolves to is not public (unless
//! `allow_private_networks`): a name that resolved to a public address when it was
//! given and to `169.254.169.254` later gains nothing. The client follows no
//! redirect and uses no proxy from the environment. The receiver's answer never
//! reaches the caller: only its status and the relay's own words for a failure
//! are kept.
//!
//! The payload is signed as the Standard Webhooks specification says:
//! `webhook-id` (the delivery id, the same at every attempt), `webhook-timestamp`
//! (Unix seconds of the attempt) and `webhook-signature: v1,<base64 of
//! HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, with the bytes of the API
//! key's `webhook_secret` (`whsec_<base64>`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use ipnet::IpNet;
use url::Url;

use crate::config::WebhooksConfig;

/// The header a call names its callback URL in.
pub(crate) const CALLBACK_HEADER: &str = "sapbridge-callback";

/// The longest callback URL accepted, in bytes (Power Automate's callback URLs,
/// with their signature, run to about 500).
pub(crate) const MAX_URL_BYTES: usize = 2048;

/// A host `[webhooks] allowed_hosts` lets callbacks name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Any host.
    Any,
    /// This name or address (lower case).
    Exact(String),
    /// Any name ending in `.` and this suffix (lower case).
    Suffix(String),
}

impl HostPattern {
    /// The pattern `text` writes, if it is one.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'))
        };
        if text == "*" {
            Some(Self::Any)
        } else if let Some(suffix) = text.strip_prefix("*.") {
            valid_name(suffix).then(|| Self::Suffix(suffix.to_owned()))
        } else {
            valid_name(&text).then(|| Self::Exact(text.trim_matches(['[', ']']).to_owned()))
        }
    }

    /// Whether `host` (lower case, without brackets) matches.
    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == host,
            Self::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        }
    }
}

/// Why a callback URL is refused (said to the client that gave it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) String);

/// The rules callback URLs are checked by, and the client that sends to them.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    hosts: Vec<HostPattern>,
    allow_private: bool,
    allow_http: bool,
    /// The client (`None` if it could not be built: every delivery then fails
    /// with that reason, which was logged).
    client: Option<reqwest::Client>,
    /// How long deliveries are retried after their call ended.
    pub(crate) retry_for: Duration,
    /// How long one attempt may take.
    pub(crate) timeout: Duration,
    /// How many deliveries one relay sends at once.
    pub(crate) concurrency: usize,
}

impl Targets {
    /// The rules of a validated `[webhooks]` table.
    pub(crate) fn new(config: &WebhooksConfig) -> Self {
        let resolver = Arc::new(GuardedResolver {
            allow_private: config.allow_private_networks,
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(config.timeout_secs.min(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .user_agent(concat!(
                "sapbridge-relay/",
                env!("CARGO_PKG_VERSION"),
                " webhooks"
            ))
            .build()
            .inspect_err(
                |error| tracing::error!(%error, "webhook client not built; no webhook is sent"),
            )
            .ok();
        Self {
            hosts: config
                .allowed_hosts
                .iter()
                .filter_map(|h| HostPattern::parse(h))
                .collect(),
            allow_private: config.allow_private_networks,
            allow_http: config.allow_http,
            client,
            retry_for: Duration::from_secs(config.retry_for_secs),
            timeout: Duration::from_secs(config.timeout_secs),
            concurrency: config.concurrency,
        }
    }

    /// The URL `raw`, if callbacks may go there.
    ///
    /// # Errors
    /// [`Refused`], saying why: not a URL, a scheme other than `https` (or `http`
    /// where allowed), credentials in it, a host not allowed, an address that is
    /// not public.
    pub(crate) fn check(&self, raw: &str) -> Result<Url, Refused> {
        let refuse = |why: String| Err(Refused(why));
        if raw.len() > MAX_URL_BYTES {
            return refuse(format!(
                "the callback URL is longer than {MAX_URL_BYTES} bytes"
            ));
        }
        let Ok(url) = Url::parse(raw.trim()) else {
            return refuse("the callback is not an absolute URL".into());
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return refuse(
                    "the callback URL must use https:// (this relay's [webhooks] allow_http is \
                     off)"
                        .into(),
                );
            }
            other => return refuse(format!("the callback URL's scheme {other:?} is not https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("the callback URL must not hold credentials".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => {
                self.check_address(IpAddr::V4(ip))?;
                ip.to_string()
            }
            Some(url::Host::Ipv6(ip)) => {
                self.check_address(IpAddr::V6(ip))?;
                ip.to_string()
            }
            None => return refuse("the callback URL has no host".into()),
        };
        if !self.hosts.iter().any(|p| p.matches(&host)) {
            return refuse(if self.hosts.is_empty() {
                "this relay sends no webhooks: its [webhooks] allowed_hosts is empty".into()
            } else {
                format!(
                    "the callback host {host:?} is not in this relay's [webhooks] allowed_hosts"
                )
            });
        }
        Ok(url)
    }

    fn check_address(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(Refused(format!(
                "the callback address {ip} is not public (loopback, private, link-local or \
                 reserved); this relay's [webhooks] allow_private_networks is off"
            )))
        }
    }

    /// The client that sends deliveries.
    ///
    /// # Errors
    /// When it could not be built.
    pub(crate) fn client(&self) -> Result<&reqwest::Client, Refused> {
        self.client
            .as_ref()
            .ok_or_else(|| Refused("the relay's webhook client could not be built".into()))
    }
}

/// The networks no callback may reach unless private networks are allowed:
/// IANA's special-purpose ranges that are not globally reachable.
const NON_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// Whether `ip` is a public (globally reachable) address. An IPv4 address written
/// as IPv6 (`::ffff:a.b.c.d`, the NAT64 `64:ff9b::a.b.c.d`, the deprecated
/// `::a.b.c.d`) is judged as the IPv4 address it carries.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
                let compatible = s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1);
                (nat64 || compatible).then(|| {
                    std::net::Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    )
                })
            });
            embedded.map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        v4 => v4,
    };
    !NON_PUBLIC.iter().any(|net| {
        net.parse::<IpNet>()
            .is_ok_and(|net: IpNet| net.contains(&ip))
    })
}

/// Resolves names for the webhook client, refusing any name with a non-public
/// address (unless allowed): checked where the connection is made, so what the
/// name resolves to later cannot differ from what was checked.
#[derive(Debug)]
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if found.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if !allow_private && let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to {}, which is not public; this relay's [webhooks] \
                     allow_private_networks is off",
                    bad.ip()
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

type HmacSha256 = Hmac<sha2_hmac::Sha256>;

/// The `webhook-signature` value of `body` sent as delivery `id` at `timestamp`
/// (Unix seconds), signed with the secret's bytes.
pub(crate) fn signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(hosts: &[&str], private: bool, http: bool) -> Targets {
        Targets::new(&WebhooksConfig {
            allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            allow_private_networks: private,
            allow_http: http,
            ..WebhooksConfig::default()
        })
    }

    #[test]
    fn the_signature_is_the_specification_example() {
        // The Standard Webhooks specification's own example.
        let secret = crate::config::webhook_secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("valid");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn hosts_match_exactly_by_suffix_or_any() {
        let t = targets(&["hooks.example.com", "*.logic.azure.com"], false, false);
        assert!(t.check("https://hooks.example.com/x").is_ok());
        assert!(t.check("https://HOOKS.example.com:8443/x?sig=1").is_ok());
        assert!(
            t.check("https://prod-1.westeurope.logic.azure.com/w")
                .is_ok()
        );
        assert!(
            t.check("https://logic.azure.com/w").is_err(),
            "the bare suffix"
        );
        assert!(t.check("https://evillogic.azure.com/w").is_err());
        assert!(t.check("https://hooks.example.com.evil.org/").is_err());
        assert!(t.check("https://other.example.com/").is_err());
        assert!(
            targets(&[], false, false)
                .check("https://hooks.example.com/")
                .is_err()
        );
        assert!(
            targets(&["*"], false, false)
                .check("https://any.where/")
                .is_ok()
        );
        assert!(HostPattern::parse("bad host").is_none());
        assert!(HostPattern::parse("*.").is_none());
    }

    #[test]
    fn schemes_and_credentials_are_checked() {
        let t = targets(&["*"], false, false);
        assert!(t.check("http://hooks.example.com/").is_err(), "http is off");
        assert!(
            targets(&["*"], false, true)
                .check("http://hooks.example.com/")
                .is_ok()
        );
        for bad in [
            "ftp://hooks.example.com/",
            "file:///etc/passwd",
            "gopher://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "/v1/relative",
            "not a url",
            "",
        ] {
            assert!(t.check(bad).is_err(), "{bad}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(t.check(&long).is_err());
    }

    #[test]
    fn every_spelling_of_a_non_public_address_is_refused() {
        let t = targets(&["*"], false, true);
        for bad in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[ff02::1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let refused = t.check(bad);
            assert!(refused.is_err(), "{bad} was allowed");
        }
        assert!(t.check("http://93.184.215.14/").is_ok());
        assert!(t.check("http://[2606:4700::1111]/").is_ok());
        // Allowed when the operator says so.
        assert!(
            targets(&["*"], true, true)
                .check("http://127.0.0.1:8080/")
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_sending() {
        let t = targets(&["*"], false, true);
        // Allowed as a name (no address is known until it is resolved) ...
        let url = t
            .check("http://localhost:9/hook")
            .expect("a name passes the check");
        // ... and refused where the connection is made.
        let error = t
            .client()
            .expect("client")
            .post(url)
            .send()
            .await
            .expect_err("refused");
        let chain = format!("{error:?}");
        assert!(chain.contains("not public"), "{chain}");
    }
}
