//! SOAP 1.1 envelopes as `/sap/bc/soap/rfc` writes and reads them: the request
//! (`<urn:FUNC>` in the Body, optionally SAP's session header), the answer
//! (`<rfc:FUNC.Response>`), and telling an answer from a Fault.

use super::xml::{self, Element, XmlError};
use super::{RFC_NS, SESSION_NS, SOAP_ENV_NS};

/// A parsed call envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallRequest {
    /// The function module name (`_-` already turned back into `/`).
    pub(crate) function: String,
    /// The function element; its children are the parameters.
    pub(crate) call: Element,
    /// SAP's session header: `Some(true)` asks for (or keeps) a stateful session,
    /// `Some(false)` ends it after this call, `None` when absent.
    pub(crate) session: Option<bool>,
}

/// Why an envelope could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// The XML itself is bad.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Well-formed XML that is not a SOAP envelope with a call in its Body.
    #[error("not a SOAP envelope: {0}")]
    NotSoap(&'static str),
}

/// Reads a request envelope.
///
/// # Errors
/// [`EnvelopeError`] when the body is not well-formed XML or holds no function call.
pub(crate) fn parse_request(body: &[u8]) -> Result<CallRequest, EnvelopeError> {
    let root = xml::parse(body)?;
    let body = envelope_body(&root)?;
    let call = body
        .children
        .first()
        .ok_or(EnvelopeError::NotSoap("the Body holds no function call"))?;
    let function = xml::name_from_xml(&call.name).into_owned();
    if !xml::is_safe_name(&function) {
        return Err(EnvelopeError::NotSoap(
            "the function name is not an ABAP name",
        ));
    }
    let session = root
        .child("Header")
        .and_then(|header| header.child("Session"))
        .and_then(|session| session.child("enableSession"))
        .map(|flag| flag.text.trim().eq_ignore_ascii_case("true"));
    Ok(CallRequest {
        function,
        call: call.clone(),
        session,
    })
}

fn envelope_body(root: &Element) -> Result<&Element, EnvelopeError> {
    if root.name != "Envelope" {
        return Err(EnvelopeError::NotSoap("the root element is not Envelope"));
    }
    root.child("Body")
        .ok_or(EnvelopeError::NotSoap("the Envelope has no Body"))
}

/// What came back for a call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// The `FUNC.Response` element.
    Response(Element),
    /// The `Fault` element.
    Fault(Element),
}

/// Reads an answer envelope.
///
/// # Errors
/// [`EnvelopeError`] when the body is not a SOAP envelope.
pub(crate) fn parse_reply(body: &[u8]) -> Result<Reply, EnvelopeError> {
    let root = xml::parse(body)?;
    let body = envelope_body(&root)?;
    if let Some(fault) = body.child("Fault") {
        return Ok(Reply::Fault(fault.clone()));
    }
    let response = body.children.first().cloned().unwrap_or_default();
    Ok(Reply::Response(response))
}

/// A request envelope around already rendered parameter elements, as SAP's own
/// test tools and SoapUI write it.
pub(crate) fn request_envelope(function: &str, params_xml: &str, session: Option<bool>) -> String {
    let tag = xml::name_to_xml(function);
    let mut out = String::with_capacity(params_xml.len() + 512);
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    out.push_str(&format!(
        r#"<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}" xmlns:urn="{RFC_NS}">"#
    ));
    match session {
        Some(enable) => out.push_str(&format!(
            r#"<soapenv:Header><sap:Session xmlns:sap="{SESSION_NS}"><enableSession>{enable}</enableSession></sap:Session></soapenv:Header>"#
        )),
        None => out.push_str("<soapenv:Header/>"),
    }
    out.push_str(&format!("<soapenv:Body><urn:{tag}>"));
    out.push_str(params_xml);
    out.push_str(&format!("</urn:{tag}></soapenv:Body></soapenv:Envelope>"));
    out
}

/// The answer envelope NetWeaver writes: `<rfc:FUNC.Response>` with the
/// EXPORTING, CHANGING and requested TABLES parameters.
pub(crate) fn response_envelope(function: &str, params_xml: &str) -> String {
    let tag = xml::name_to_xml(function);
    let mut out = String::with_capacity(params_xml.len() + 384);
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    out.push_str(&format!(
        r#"<soap-env:Envelope xmlns:soap-env="{SOAP_ENV_NS}"><soap-env:Body>"#
    ));
    out.push_str(&format!(r#"<rfc:{tag}.Response xmlns:rfc="{RFC_NS}">"#));
    out.push_str(params_xml);
    out.push_str(&format!(
        "</rfc:{tag}.Response></soap-env:Body></soap-env:Envelope>"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_request_with_session_header() {
        let text = request_envelope("/BI0/F", "<A>1</A>", Some(true));
        let request = parse_request(text.as_bytes()).unwrap();
        assert_eq!(request.function, "/BI0/F");
        assert_eq!(request.session, Some(true));
        assert_eq!(request.call.child_text("A"), "1");
    }

    #[test]
    fn refuses_non_soap() {
        assert!(matches!(
            parse_request(b"<html/>"),
            Err(EnvelopeError::NotSoap(_))
        ));
        let empty = format!(r#"<e:Envelope xmlns:e="{SOAP_ENV_NS}"><e:Body/></e:Envelope>"#);
        assert!(matches!(
            parse_request(empty.as_bytes()),
            Err(EnvelopeError::NotSoap(_))
        ));
        assert!(matches!(parse_request(b"<a"), Err(EnvelopeError::Xml(_))));
    }

    #[test]
    fn tells_response_from_fault() {
        let ok = response_envelope("F", "<X>1</X>");
        assert!(
            matches!(parse_reply(ok.as_bytes()).unwrap(), Reply::Response(e) if e.name == "F.Response")
        );
    }
}
