//! Unguessable ids: call ids (`c_`, time-ordered) and agent session ids (`s_`).
//! A call id alone grants nothing without the API key that owns the call, but it
//! must not be guessable either.

use rand::RngCore;

/// A new random id with a prefix (`c_` for calls, `s_` for sessions): 128 random bits
/// in hex, unguessable, so a call id alone grants nothing without a key.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    push_random_hex(&mut id);
    id
}

/// Appends 128 random bits as 32 lower-case hex digits.
fn push_random_hex(id: &mut String) {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    push_hex(id, &bytes);
}

/// Appends `bytes` as lower-case hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// A new call id: `c_`, the Unix time in milliseconds (12 hex digits), then 128
/// random bits in hex. As unguessable as [`new_id`], and ids created close in time
/// sort close together, so the queue's id index grows at its end instead of
/// touching a random page for every new call.
pub(crate) fn new_call_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let millis = u64::try_from(millis).unwrap_or(0) & 0xffff_ffff_ffff;
    // One buffer, no formatting machinery: this runs for every call.
    let mut id = String::with_capacity(2 + 12 + 32);
    id.push_str("c_");
    push_hex(&mut id, &millis.to_be_bytes()[2..]);
    push_random_hex(&mut id);
    id
}

/// When call `id` was accepted, from the time [`new_call_id`] put in it; `None`
/// for an id not of that form.
pub(crate) fn call_id_time(id: &str) -> Option<time::OffsetDateTime> {
    let millis = u64::from_str_radix(id.strip_prefix("c_")?.get(..12)?, 16).ok()?;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex(text: &str) -> bool {
        text.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn a_call_ids_time_reads_back() {
        let before = time::OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
        let at = call_id_time(&new_call_id()).expect("time");
        assert!(
            at >= before && at <= time::OffsetDateTime::now_utc(),
            "{at}"
        );
        assert_eq!(call_id_time("s_0123456789abcdef"), None);
        assert_eq!(call_id_time("c_xyz"), None);
    }

    #[test]
    fn call_ids_are_time_then_random_hex() {
        let before = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let (a, b) = (new_call_id(), new_call_id());
        let after = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        for id in [&a, &b] {
            assert_eq!(id.len(), 2 + 12 + 32, "{id}");
            assert!(id.starts_with("c_") && is_hex(&id[2..]), "{id}");
            let millis = i128::from_str_radix(&id[2..14], 16).unwrap();
            assert!((before..=after).contains(&millis), "{id}: {millis}");
        }
        assert_ne!(a[14..], b[14..], "the random part differs");
        assert!(a[..14] <= b[..14], "later ids sort later");
    }

    #[test]
    fn ids_are_prefix_then_128_random_bits() {
        let (a, b) = (new_id("s_"), new_id("s_"));
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("s_") && is_hex(&a[2..]), "{a}");
        assert_ne!(a, b);
        let mut out = String::new();
        push_hex(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "000fa5ff");
    }
}
