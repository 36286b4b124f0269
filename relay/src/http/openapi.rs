//! `GET /openapi.json`: the relay's OpenAPI 3.1 document, served as written.
//!
//! The document (`openapi.json` next to this file) is maintained by hand beside
//! the router; `relay/tests/openapi.rs` checks that every route of the router is
//! in it with its methods, that every documented operation is routed, and that
//! every `$ref` resolves. It needs no API key.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

/// The document, embedded at build time.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub(crate) async fn document() -> Response {
    let mut response = DOCUMENT.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let document: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
}
