//! The text SAP reads from the `OPTIONS` rows: each row a CHAR 72 field, its
//! trailing blanks included, the rows end to end (module docs of `where_clause`).
//!
//! Refused here, row by row: more than [`MAX_ROWS`] rows, a row wider than
//! [`ROW_WIDTH`] (RFC would cut it or fail, and a cut changes the clause), control
//! characters (whether ABAP's scanner takes a TAB or a line feed for a blank is not
//! documented), characters outside SAP's 16-bit character set (a surrogate pair
//! counts as two of the 72 columns in SAP), and rows starting with `*` (comment
//! rows). What may not run from one row into the next is the lexer's business: it
//! sees the row boundaries in the text this builds.

use super::{MAX_ROWS, ROW_WIDTH, WhereError};

/// The rows as one text of `rows.len() * ROW_WIDTH` characters.
///
/// # Errors
/// The refusals in the module docs, naming the row and column.
pub(super) fn abap_text<S: AsRef<str>>(rows: &[S]) -> Result<Vec<char>, WhereError> {
    if rows.len() > MAX_ROWS {
        return Err(WhereError::whole(format!(
            "{} OPTIONS rows; at most {MAX_ROWS}",
            rows.len()
        )));
    }
    let mut text = Vec::with_capacity(rows.len() * ROW_WIDTH);
    for (index, row) in rows.iter().enumerate() {
        let start = index * ROW_WIDTH;
        for (width, c) in row.as_ref().chars().enumerate() {
            if width == ROW_WIDTH {
                let total = row.as_ref().chars().count();
                return Err(WhereError::at(
                    start + ROW_WIDTH - 1,
                    format!(
                        "the row holds {total} characters; an OPTIONS row (RFC_DB_OPT-TEXT) \
                         holds {ROW_WIDTH}"
                    ),
                ));
            }
            if c.is_control() {
                return Err(WhereError::at(
                    start + width,
                    format!(
                        "control character U+{:04X}; only blanks separate tokens",
                        u32::from(c)
                    ),
                ));
            }
            if u32::from(c) > 0xFFFF {
                return Err(WhereError::at(
                    start + width,
                    format!(
                        "character U+{:X} is outside SAP's 16-bit character set",
                        u32::from(c)
                    ),
                ));
            }
            text.push(c);
        }
        if text.get(start) == Some(&'*') {
            return Err(WhereError::at(
                start,
                "a row starting with '*' is an ABAP comment row; comments are not allowed",
            ));
        }
        text.resize(start + ROW_WIDTH, ' ');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_to_72_and_joined_end_to_end() {
        let text = abap_text(&["LAND1 EQ 'DE' AND", "NAME1 = 'x'"]).unwrap();
        assert_eq!(text.len(), 2 * ROW_WIDTH);
        let joined: String = text.iter().collect();
        assert!(joined.starts_with("LAND1 EQ 'DE' AND   "));
        assert_eq!(&joined[ROW_WIDTH..ROW_WIDTH + 11], "NAME1 = 'x'");
        assert!(abap_text(&[] as &[&str]).unwrap().is_empty());
    }

    #[test]
    fn rows_that_sap_would_read_otherwise_are_refused() {
        let wide = "x".repeat(73);
        let full = "x".repeat(72);
        assert!(abap_text(&[full.as_str()]).is_ok());
        let e = abap_text(&[wide.as_str()]).unwrap_err();
        assert!(e.to_string().contains("73 characters"), "{e}");
        for bad in [
            "A\tB",
            "A\nB",
            "A\rB",
            "A\u{7f}",
            "A\u{85}",
            "NAME1 = '\u{1F600}'",
        ] {
            assert!(abap_text(&["LAND1 = 'DE'", bad]).is_err(), "{bad:?}");
        }
        let e = abap_text(&["LAND1 = 'DE'", "* comment"]).unwrap_err();
        assert!(e.to_string().starts_with("row 2, column 1:"), "{e}");
        assert!(abap_text(&[" * not at the start"]).is_ok());
        let many = vec!["A"; MAX_ROWS + 1];
        assert!(abap_text(&many).is_err());
    }
}
