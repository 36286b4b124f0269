//! Which headers cross the tunnel, and how they are carried.
//!
//! Request (client → agent): end-to-end headers only. Dropped are the hop-by-hop
//! headers ([`sapbridge_proto::HOP_BY_HOP_HEADERS`]), any header the request's own
//! `Connection` header names, `Expect` (the relay already answered any
//! `100-continue`), and the client's sapbridge credentials: `Authorization` and
//! `X-API-Key` — the backend must never see the API key — and the signed
//! `Sapbridge-Forwarded` header of a request another relay replica forwarded. `Cookie` is carried; the
//! agent drops it unless its system's `forward_cookies` is on (the on-premises side
//! decides what reaches SAP).
//!
//! Response (agent → client): end-to-end headers only, the same rules; values that
//! do not form a valid header are dropped with a debug log.

use http::header::{AUTHORIZATION, CONNECTION, EXPECT};
use http::{HeaderMap, HeaderName, HeaderValue};
use sapbridge_proto::{WireHeader, header_value_from_wire, header_value_to_wire, is_hop_by_hop};

/// The client-credential header besides `Authorization`.
const API_KEY_HEADER: &str = "x-api-key";

/// The names a message's `Connection` header lists (lower case).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The request headers to forward, in wire form.
pub(crate) fn request_to_wire(headers: &HeaderMap) -> Vec<WireHeader> {
    let listed = connection_listed(headers);
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !is_hop_by_hop(name)
                && !listed.iter().any(|l| l == name)
                && *name != AUTHORIZATION
                && *name != EXPECT
                && name != API_KEY_HEADER
                && name != super::cluster::FORWARDED_HEADER
        })
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                header_value_to_wire(value.as_bytes()),
            )
        })
        .collect()
}

/// The response headers to give the client, from wire form.
pub(crate) fn response_from_wire(wire: &[WireHeader]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(wire.len());
    for (name, value) in wire {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(header_value_from_wire(value).and_then(|v| HeaderValue::from_bytes(&v).ok()));
        match parsed {
            Some((name, value)) => {
                headers.append(name, value);
            }
            None => tracing::debug!(header = %name, "dropping an invalid response header"),
        }
    }
    let listed = connection_listed(&headers);
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str()) || listed.iter().any(|l| l == name.as_str()))
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer secret-key".parse().unwrap());
        headers.insert("x-api-key", "secret-key".parse().unwrap());
        headers.insert("connection", "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("host", "relay".parse().unwrap());
        headers.insert("expect", "100-continue".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("cookie", "a=b".parse().unwrap());
        headers.insert("sapbridge-forwarded", "claims.mac".parse().unwrap());
        headers.append("accept", "a/b".parse().unwrap());
        headers.append("accept", "c/d".parse().unwrap());
        let wire = request_to_wire(&headers);
        let names: Vec<&str> = wire.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "cookie", "accept", "accept"]);
        assert!(!format!("{wire:?}").contains("secret-key"));
    }

    #[test]
    fn response_headers_are_rebuilt_without_hop_by_hop() {
        let wire = vec![
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("connection".to_owned(), "close".to_owned()),
            ("transfer-encoding".to_owned(), "chunked".to_owned()),
            ("set-cookie".to_owned(), "a=1".to_owned()),
            ("set-cookie".to_owned(), "b=2".to_owned()),
            ("bad header".to_owned(), "x".to_owned()),
            ("x-latin".to_owned(), header_value_to_wire(&[0xE9])),
        ];
        let headers = response_from_wire(&wire);
        assert_eq!(headers.len(), 4);
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(headers["x-latin"].as_bytes(), &[0xE9]);
        assert!(headers.get("transfer-encoding").is_none());
    }
}
