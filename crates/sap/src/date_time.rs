//! SAP's date and time types in the RFC value model (PyRFC conventions): a DATS
//! value is the string `YYYYMMDD`, a TIMS value the string `HHMMSS`.
//!
//! A DATS field also takes its initial value `00000000` and, as SAP's RFC library
//! does, an empty string (which becomes the initial value); a TIMS field takes an
//! empty string (which becomes `000000`). Values are read trimmed.
//!
//! This is the one definition of those rules: the simulator checks its inputs with
//! it, and the relay checks a call against a cached function interface with it
//! before the call is queued.

/// The initial (empty) DATS value.
pub const INITIAL_DATE: &str = "00000000";

/// Whether `text` is a date `YYYYMMDD` that exists in the calendar (no initial
/// value, no blanks).
pub fn is_date(text: &str) -> bool {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        text[..4].parse::<i32>(),
        text[4..6].parse::<u8>(),
        text[6..].parse::<u8>(),
    ) else {
        return false;
    };
    time::Month::try_from(month)
        .ok()
        .and_then(|month| time::Date::from_calendar_date(year, month, day).ok())
        .is_some()
}

/// Whether `text` is a time of day `HHMMSS` (`000000` to `235959`, no blanks).
pub fn is_time(text: &str) -> bool {
    text.len() == 6
        && text.bytes().all(|b| b.is_ascii_digit())
        && text[..2] < *"24"
        && text[2..4] < *"60"
        && text[4..] < *"60"
}

/// Whether a DATS field takes `value`: trimmed, a date, the initial date or empty.
pub fn dats_accepts(value: &str) -> bool {
    let value = value.trim();
    value.is_empty() || value == INITIAL_DATE || is_date(value)
}

/// Whether a TIMS field takes `value`: trimmed, a time or empty.
pub fn tims_accepts(value: &str) -> bool {
    let value = value.trim();
    value.is_empty() || is_time(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_exist_in_the_calendar() {
        for good in ["20240229", "19991231", "00010101", "20230101"] {
            assert!(is_date(good), "{good}");
            assert!(dats_accepts(good), "{good}");
        }
        for bad in [
            "20230229",
            "20241301",
            "20240100",
            "20240132",
            "2024022",
            "202402290",
            "2024-02-2",
            "2024022a",
            "",
            "00000000",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
        // A DATS field also takes its initial value, empty, and blanks around.
        for taken in ["00000000", "", "  ", " 20240229 "] {
            assert!(dats_accepts(taken), "{taken:?}");
        }
        assert!(!dats_accepts("20230229"));
        assert!(!dats_accepts("0"));
    }

    #[test]
    fn times_are_hours_minutes_seconds() {
        for good in ["000000", "235959", "120000"] {
            assert!(is_time(good) && tims_accepts(good), "{good}");
        }
        for bad in [
            "240000", "236000", "235960", "12345", "1234567", "12:00:", "-12345", "",
        ] {
            assert!(!is_time(bad), "{bad}");
        }
        for taken in ["", " ", " 235959"] {
            assert!(tims_accepts(taken), "{taken:?}");
        }
        assert!(!tims_accepts("246000"));
    }
}
