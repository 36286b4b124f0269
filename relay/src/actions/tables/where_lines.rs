//! The WHERE clause of a table read as `RFC_READ_TABLE`'s `OPTIONS` table: rows
//! of CHAR 72 (`RFC_DB_OPT-TEXT`), written so that the agent passes them on
//! (`sapbridge_sap::where_clause`).
//!
//! SAP reads the rows end to end, each with its trailing blanks, so a token in the
//! 72nd column would run into the next row: lines hold at most 71 characters. No
//! token is cut: the clause is cut into tokens — runs of non-blank characters,
//! where a quoted literal (`'O''Brien'`, `'New York'`) belongs to its token whole,
//! blanks included — and the tokens are packed greedily into lines. Blanks (and
//! other white space) outside literals collapse to one; blanks inside a literal
//! are kept exactly. Refused with 400: a token longer than a line, a literal
//! holding a control character or a character outside SAP's 16-bit set, and a
//! clause needing more rows than the agent takes. Whether the clause is in the
//! grammar is the agent's call (403 from there).

use sapbridge_sap::where_clause::{MAX_ROWS, ROW_WIDTH};

use crate::actions::ActionError;

/// Characters in one `OPTIONS` line as written here: the 72nd column stays blank.
pub(crate) const LINE: usize = ROW_WIDTH - 1;

/// Splits `clause` into tokens (see the module docs).
fn tokens(clause: &str) -> Result<Vec<String>, ActionError> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut chars = clause.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            current.push(c);
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        current.push_str("''");
                    }
                    Some('\'') => {
                        current.push('\'');
                        break;
                    }
                    Some(inner) if inner.is_control() || u32::from(inner) > 0xFFFF => {
                        return Err(ActionError::BadRequest(format!(
                            "where: a quoted literal holds U+{:04X}, which RFC_READ_TABLE \
                             cannot take",
                            u32::from(inner)
                        )));
                    }
                    Some(inner) => current.push(inner),
                    None => {
                        return Err(ActionError::BadRequest(
                            "where: a quoted literal is not closed".into(),
                        ));
                    }
                }
            }
        } else if c.is_whitespace() {
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

/// The `OPTIONS` lines for `clause` (none for an empty clause).
///
/// # Errors
/// 400 for an unclosed literal, a literal holding a character RFC cannot carry, a
/// token longer than one line or more than `MAX_ROWS` lines.
pub(crate) fn option_lines(clause: &str) -> Result<Vec<String>, ActionError> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for token in tokens(clause)? {
        let len = token.chars().count();
        if len > LINE {
            let shown: String = token.chars().take(20).collect();
            return Err(ActionError::BadRequest(format!(
                "where: {shown:?}… is {len} characters without a blank; RFC_READ_TABLE takes \
                 the clause in lines of {LINE} and cannot split it"
            )));
        }
        let used = line.chars().count();
        if used > 0 && used + 1 + len > LINE {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&token);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > MAX_ROWS {
        return Err(ActionError::BadRequest(format!(
            "where: the clause needs {} rows of {LINE} characters; at most {MAX_ROWS}",
            lines.len()
        )));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clauses_stay_one_line() {
        assert_eq!(option_lines("").unwrap(), Vec::<String>::new());
        assert_eq!(
            option_lines("  LAND1   EQ 'DE' ").unwrap(),
            vec!["LAND1 EQ 'DE'"]
        );
    }

    #[test]
    fn long_clauses_split_between_tokens_never_inside_literals() {
        let clause = "LAND1 EQ 'DE' AND ( ORT01 EQ 'Bad  Homburg vor der Hoehe' OR ORT01 EQ \
                      'Frankfurt am Main' ) AND NAME1 LIKE 'O''Brien%' AND KUNNR NE '0000001000'";
        let lines = option_lines(clause).unwrap();
        assert!(lines.len() > 1, "{lines:?}");
        for line in &lines {
            assert!(line.chars().count() <= LINE, "{line:?}");
            assert_eq!(line.matches('\'').count() % 2, 0, "literal cut: {line:?}");
        }
        let joined = lines.join(" ");
        assert!(joined.contains("'Bad  Homburg vor der Hoehe'"));
        assert!(joined.contains("'O''Brien%'"));
        assert_eq!(
            joined.split_whitespace().count(),
            clause.split_whitespace().count()
        );
    }

    #[test]
    fn impossible_clauses_are_refused() {
        assert!(option_lines("NAME1 EQ 'open").is_err());
        let long = format!("NAME1 EQ '{}'", "x".repeat(80));
        assert!(option_lines(&long).is_err());
        let exactly = format!("'{}'", "y".repeat(LINE - 2));
        assert_eq!(option_lines(&exactly).unwrap(), vec![exactly.clone()]);
        let wider = format!("'{}'", "y".repeat(LINE - 1));
        assert!(option_lines(&wider).is_err());
        assert!(option_lines("NAME1 EQ 'a\tb'").is_err());
        assert!(option_lines("NAME1 EQ '\u{1F600}'").is_err());
        let many = "LAND1 EQ 'DE' OR ".repeat(MAX_ROWS * 5);
        assert!(option_lines(&format!("{many}LAND1 EQ 'FR'")).is_err());
    }

    #[test]
    fn every_line_is_one_the_agent_passes_on() {
        let clause = "LAND1 EQ 'DE' AND ( ORT01 EQ 'Bad  Homburg vor der Hoehe' OR ORT01 EQ \
                      'Frankfurt am Main' OR NAME1 LIKE 'O''Brien%' ) AND KUNNR IN \
                      ('0000001000','0000001001', '0000001002') AND\tKUNNR NE '0000001003' \
                      AND ORT01 NOT BETWEEN 'A' AND 'B' AND STCEG IS NOT NULL";
        // A leading literal of every length shifts every cut between lines.
        for shift in 0..LINE - 12 {
            let shifted = format!("NAME1 NE '{}' AND {clause}", "x".repeat(shift));
            let lines = option_lines(&shifted).unwrap();
            assert!(lines.len() > 3, "{lines:?}");
            assert!(lines.iter().all(|l| l.chars().count() <= LINE), "{lines:?}");
            if let Err(e) = sapbridge_sap::where_clause::parse_rows(&lines, &|_: &str| true) {
                panic!("the agent would refuse {lines:?}: {e}");
            }
        }
    }
}
