//! `SAP_UC` text: the SDK's strings are UTF-16 code units, zero-terminated when
//! passed as names, fixed-length (blank-padded) in CHAR fields.

use crate::ffi::SAP_UC;

/// `text` as zero-terminated UTF-16, for names and logon parameters. An interior
/// NUL would end the string early on the C side, so it is refused.
///
/// # Errors
/// [`NulInText`] when `text` holds a NUL character.
pub fn to_uc_z(text: &str) -> Result<Vec<SAP_UC>, NulInText> {
    if text.contains('\0') {
        return Err(NulInText);
    }
    let mut out: Vec<SAP_UC> = text.encode_utf16().collect();
    out.push(0);
    Ok(out)
}

/// `text` as UTF-16 without a terminator, for values given with their length.
pub fn to_uc(text: &str) -> Vec<SAP_UC> {
    text.encode_utf16().collect()
}

/// The text of a UTF-16 buffer up to its first NUL (or its end); unpaired
/// surrogates become U+FFFD.
pub fn from_uc(buffer: &[SAP_UC]) -> String {
    let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
    String::from_utf16_lossy(&buffer[..end])
}

/// A NUL character inside text meant for the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("text for the RFC library holds a NUL character")]
pub struct NulInText;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_beyond_the_basic_plane() {
        let text = "Grüße 日本 𝄞";
        let z = to_uc_z(text).unwrap();
        assert_eq!(z.last(), Some(&0));
        assert_eq!(from_uc(&z), text);
        assert_eq!(from_uc(&to_uc(text)), text);
        assert_eq!(to_uc_z("a\0b"), Err(NulInText));
        assert_eq!(from_uc(&[0x41, 0xD800, 0x42]), "A\u{FFFD}B");
    }
}
