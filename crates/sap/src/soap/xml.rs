//! A small, bounded XML tree for SOAP envelopes: parsing with quick-xml into
//! [`Element`]s (local names only, namespaces dropped), writing escaped text, and
//! SAP's name escaping (`/` in ABAP names travels as `_-` in XML element names).
//!
//! Parsing never panics and never recurses: depth and element count are capped, and
//! the input size is capped by the caller (the HTTP body limit).

use std::borrow::Cow;

use quick_xml::events::{BytesRef, Event};
use quick_xml::reader::Reader;

/// Deepest element nesting accepted. An RFC envelope needs about eight levels
/// (Envelope, Body, function, table, item, field, nested structure...).
pub(crate) const MAX_DEPTH: usize = 64;

/// Most elements accepted in one document (a 16 MiB body of tiny elements would
/// otherwise allocate far more than its size in tree nodes).
pub(crate) const MAX_ELEMENTS: usize = 2_000_000;

/// One XML element: its local name (namespace prefix removed), its child elements
/// and its text content (only meaningful when it has no children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    /// Local name, still XML-escaped in SAP's sense (`_-` for `/`).
    pub(crate) name: String,
    /// The namespace prefix as written (`soap-env`, `urn`, …), or empty.
    pub(crate) prefix: String,
    /// Child elements in document order.
    pub(crate) children: Vec<Element>,
    /// Concatenated text and CDATA, entities resolved. Not trimmed.
    pub(crate) text: String,
}

impl Element {
    /// The first child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first child whose local name matches case-insensitively.
    pub(crate) fn child_ignore_case(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The text of the first child with this name, or "".
    pub(crate) fn child_text(&self, name: &str) -> &str {
        self.child(name).map_or("", |c| c.text.as_str())
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum XmlError {
    /// Not well-formed XML (the parser's message).
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// Nesting deeper than [`MAX_DEPTH`] or more than [`MAX_ELEMENTS`] elements.
    #[error("XML document too deep or too large")]
    TooLarge,
    /// A DOCTYPE declaration (SOAP forbids them; they are an entity-expansion risk).
    #[error("DOCTYPE declarations are not allowed in SOAP messages")]
    Doctype,
    /// No root element at all.
    #[error("empty XML document")]
    Empty,
}

/// Parses a whole document and returns its root element.
///
/// # Errors
/// [`XmlError`] when the input is not well-formed, too deep or too large, holds a
/// DOCTYPE, or has no root element.
pub(crate) fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    config.trim_text(false);
    config.expand_empty_elements = true;
    config.check_end_names = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                if root.is_some() && stack.is_empty() {
                    return Err(XmlError::Malformed("more than one root element".into()));
                }
                let qname = start.name();
                let name = String::from_utf8_lossy(qname.local_name().as_ref()).into_owned();
                let prefix = qname
                    .prefix()
                    .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                    .unwrap_or_default();
                stack.push(Element {
                    name,
                    prefix,
                    ..Element::default()
                });
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError::Malformed("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(text) => {
                let decoded = text
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                push_text(&mut stack, &decoded)?;
            }
            Event::CData(cdata) => {
                let decoded = cdata
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                push_text(&mut stack, &decoded)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => break,
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unexpected end of document".into()));
    }
    root.ok_or(XmlError::Empty)
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}

fn resolve_reference(reference: &BytesRef<'_>) -> Result<Cow<'static, str>, XmlError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(c)) => Ok(Cow::Owned(c.to_string())),
            Ok(None) | Err(_) => Err(XmlError::Malformed("invalid character reference".into())),
        };
    }
    let name = reference
        .decode()
        .map_err(|e| XmlError::Malformed(e.to_string()))?;
    let text = match name.as_ref() {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        other => return Err(XmlError::Malformed(format!("unknown entity &{other};"))),
    };
    Ok(Cow::Borrowed(text))
}

/// Escapes text for element content (and attribute values).
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// Appends `<name>escaped text</name>` (or `<name/>` for empty text).
pub(crate) fn push_leaf(out: &mut String, name: &str, text: &str) {
    if text.is_empty() {
        out.push('<');
        out.push_str(name);
        out.push_str("/>");
    } else {
        out.push('<');
        out.push_str(name);
        out.push('>');
        out.push_str(&escape(text));
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

/// Turns an ABAP name into an XML element name: `/BI0/OCUSTOMER` → `_-BI0_-OCUSTOMER`.
pub(crate) fn name_to_xml(abap: &str) -> Cow<'_, str> {
    if abap.contains('/') {
        Cow::Owned(abap.replace('/', "_-"))
    } else {
        Cow::Borrowed(abap)
    }
}

/// Turns an XML element name back into the ABAP name: `_-BI0_-X` → `/BI0/X`.
pub(crate) fn name_from_xml(xml: &str) -> Cow<'_, str> {
    if xml.contains("_-") {
        Cow::Owned(xml.replace("_-", "/"))
    } else {
        Cow::Borrowed(xml)
    }
}

/// Whether `name` is usable as an XML element name once escaped (ABAP names are
/// letters, digits, `_` and `/`; we refuse anything that would break the markup).
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '-' | '.'))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements_with_entities() {
        let root =
            parse(b"<a:X xmlns:a='u'><B>1 &amp; 2&#33;</B><C><item><D/></item></C></a:X>").unwrap();
        assert_eq!(root.name, "X");
        assert_eq!(root.prefix, "a");
        assert_eq!(root.child_text("B"), "1 & 2!");
        assert_eq!(root.child("C").unwrap().children[0].children[0].name, "D");
    }

    #[test]
    fn rejects_bad_documents_without_panicking() {
        for bad in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"",
            b"<a>&foo;</a>",
            b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
            b"<a/><b/>",
            b"text",
            b"\xff\xfe<",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooLarge));
    }

    #[test]
    fn escapes_namespaced_names() {
        assert_eq!(name_to_xml("/BI0/OCUST"), "_-BI0_-OCUST");
        assert_eq!(name_from_xml("_-BI0_-OCUST"), "/BI0/OCUST");
        assert!(is_safe_name("/BI0/X_1"));
        assert!(!is_safe_name("A><B"));
    }
}
