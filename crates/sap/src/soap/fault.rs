//! SOAP Faults: how an [`RfcError`] is written as a Fault and read back.
//!
//! An ABAP exception (group `ABAP_APPLICATION_FAILURE`, including `FU_NOT_FOUND`)
//! takes the shape NetWeaver's SOAP-RFC handler uses, the serialized exception
//! `FUNC.Exception` of SAP's RFC-XML format:
//!
//! ```xml
//! <soap-env:Fault>
//!   <faultcode>soap-env:Client</faultcode>
//!   <faultstring xml:lang="en">TABLE_NOT_AVAILABLE</faultstring>
//!   <detail>
//!     <rfc:RFC_READ_TABLE.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions">
//!       <Name>TABLE_NOT_AVAILABLE</Name>
//!       <Text>Table T000X is not available</Text>
//!       <Message><ID>SV</ID><Number>029</Number></Message>
//!       <Attributes><V1>T000X</V1></Attributes>
//!     </rfc:RFC_READ_TABLE.Exception>
//!   </detail>
//! </soap-env:Fault>
//! ```
//!
//! Every other group is a Fault with `faultcode` `soap-env:Client` (the caller's
//! parameters: `EXTERNAL_RUNTIME_FAILURE`, `NOT_ALLOWED`) or `soap-env:Server`
//! (runtime and communication failures), `faultstring` the message, and — a
//! **sapbridge extension** that real SAP does not send — the full error in
//! `<detail><sb:RfcError xmlns:sb="urn:sapbridge:soap:rfc-error">` with one child
//! per [`RfcError`] field. A client reading a Fault without that detail (a real
//! NetWeaver) falls back to the `faultcode`: `Client` → `EXTERNAL_RUNTIME_FAILURE`,
//! `Server` → `ABAP_RUNTIME_FAILURE`.

use serde_json::Value;

use super::xml::{self, Element};
use super::{RFC_NS, SAPBRIDGE_ERROR_NS, SOAP_ENV_NS};
use crate::{ErrorGroup, RfcError};

/// The Fault envelope for `error` raised by `function`.
pub(crate) fn fault_envelope(function: &str, error: &RfcError) -> String {
    let client_side = matches!(
        error.group,
        ErrorGroup::AbapApplicationFailure
            | ErrorGroup::ExternalRuntimeFailure
            | ErrorGroup::NotAllowed
    );
    let code = if client_side {
        "soap-env:Client"
    } else {
        "soap-env:Server"
    };
    let mut detail = String::new();
    let faultstring = if error.group == ErrorGroup::AbapApplicationFailure {
        let tag = format!("rfc:{}.Exception", xml::name_to_xml(function));
        detail.push_str(&format!(r#"<{tag} xmlns:rfc="{RFC_NS}">"#));
        xml::push_leaf(&mut detail, "Name", &error.key);
        xml::push_leaf(&mut detail, "Text", &error.message);
        if !error.msg_class.is_empty() || !error.msg_number.is_empty() {
            detail.push_str("<Message>");
            xml::push_leaf(&mut detail, "ID", &error.msg_class);
            xml::push_leaf(&mut detail, "Number", &error.msg_number);
            detail.push_str("</Message>");
        }
        let vars = [&error.msg_v1, &error.msg_v2, &error.msg_v3, &error.msg_v4];
        if vars.iter().any(|v| !v.is_empty()) {
            detail.push_str("<Attributes>");
            for (name, value) in ["V1", "V2", "V3", "V4"].into_iter().zip(vars) {
                if !value.is_empty() {
                    xml::push_leaf(&mut detail, name, value);
                }
            }
            detail.push_str("</Attributes>");
        }
        detail.push_str(&format!("</{tag}>"));
        error.key.as_str()
    } else {
        detail.push_str(&format!(r#"<sb:RfcError xmlns:sb="{SAPBRIDGE_ERROR_NS}">"#));
        if let Ok(Value::Object(fields)) = serde_json::to_value(error) {
            for (name, value) in &fields {
                xml::push_leaf(&mut detail, name, value.as_str().unwrap_or_default());
            }
        }
        detail.push_str("</sb:RfcError>");
        if error.message.is_empty() {
            error.key.as_str()
        } else {
            error.message.as_str()
        }
    };
    let mut out = String::with_capacity(detail.len() + 512);
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    out.push_str(&format!(
        r#"<soap-env:Envelope xmlns:soap-env="{SOAP_ENV_NS}"><soap-env:Body><soap-env:Fault>"#
    ));
    xml::push_leaf(&mut out, "faultcode", code);
    out.push_str(&format!(
        r#"<faultstring xml:lang="en">{}</faultstring>"#,
        xml::escape(faultstring)
    ));
    out.push_str("<detail>");
    out.push_str(&detail);
    out.push_str("</detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>");
    out
}

/// The [`RfcError`] a Fault element stands for.
pub(crate) fn error_from_fault(fault: &Element) -> RfcError {
    let faultstring = fault
        .child_ignore_case("faultstring")
        .map_or("", |f| f.text.trim());
    let detail = fault.child_ignore_case("detail");
    if let Some(exception) =
        detail.and_then(|d| d.children.iter().find(|c| c.name.ends_with(".Exception")))
    {
        let name = exception.child_text("Name").trim();
        let key = if name.is_empty() { faultstring } else { name };
        let text = exception.child_text("Text");
        let mut error = RfcError::new(
            ErrorGroup::AbapApplicationFailure,
            key,
            if text.is_empty() { key } else { text },
        );
        if let Some(message) = exception.child("Message") {
            error.msg_class = message.child_text("ID").trim().to_owned();
            error.msg_number = message.child_text("Number").trim().to_owned();
            if !error.msg_class.is_empty() {
                error.msg_type = "E".to_owned();
            }
        }
        if let Some(attributes) = exception.child("Attributes") {
            error.msg_v1 = attributes.child_text("V1").to_owned();
            error.msg_v2 = attributes.child_text("V2").to_owned();
            error.msg_v3 = attributes.child_text("V3").to_owned();
            error.msg_v4 = attributes.child_text("V4").to_owned();
        }
        return error;
    }
    if let Some(extension) = detail.and_then(|d| d.child("RfcError")) {
        let fields: serde_json::Map<String, Value> = extension
            .children
            .iter()
            .map(|c| (c.name.clone(), Value::String(c.text.clone())))
            .collect();
        if let Ok(error) = serde_json::from_value::<RfcError>(Value::Object(fields)) {
            return error;
        }
    }
    let code = fault
        .child_ignore_case("faultcode")
        .map_or("", |c| c.text.trim());
    let group = match code.rsplit(':').next().unwrap_or("") {
        c if c.starts_with("Client") => ErrorGroup::ExternalRuntimeFailure,
        _ => ErrorGroup::AbapRuntimeFailure,
    };
    let looks_like_key = !faultstring.is_empty()
        && faultstring.len() <= 64
        && faultstring
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '/');
    let key = if looks_like_key {
        faultstring
    } else {
        "SOAP_FAULT"
    };
    RfcError::new(
        group,
        key,
        if faultstring.is_empty() {
            code
        } else {
            faultstring
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::envelope::{Reply, parse_reply};

    fn round_trip(error: &RfcError) -> RfcError {
        match parse_reply(fault_envelope("/X/F", error).as_bytes()).unwrap() {
            Reply::Fault(fault) => error_from_fault(&fault),
            Reply::Response(_) => panic!("not a fault"),
        }
    }

    #[test]
    fn abap_exception_round_trips() {
        let error = RfcError::new(
            ErrorGroup::AbapApplicationFailure,
            "TABLE_NOT_AVAILABLE",
            "T000X <missing>",
        )
        .with_message("SV", "E", "029")
        .with_vars("T000X", "", "", "");
        assert_eq!(round_trip(&error), error);
    }

    #[test]
    fn system_failures_round_trip_through_the_extension() {
        let error = RfcError::new(
            ErrorGroup::ExternalRuntimeFailure,
            "RFC_CONVERSION_FAILURE",
            "NUMC 'A1'",
        );
        assert_eq!(round_trip(&error), error);
        let error = RfcError::new(ErrorGroup::CommunicationFailure, "SESSION_EXPIRED", "gone");
        assert_eq!(round_trip(&error), error);
    }

    #[test]
    fn plain_faults_map_by_faultcode() {
        let text = format!(
            r#"<s:Envelope xmlns:s="{SOAP_ENV_NS}"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>CONVT_NO_NUMBER</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        let Reply::Fault(fault) = parse_reply(text.as_bytes()).unwrap() else {
            panic!()
        };
        let error = error_from_fault(&fault);
        assert_eq!(
            (error.group, error.key.as_str()),
            (ErrorGroup::AbapRuntimeFailure, "CONVT_NO_NUMBER")
        );
    }
}
