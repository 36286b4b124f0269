//! The WHERE clause of a table read as `RFC_READ_TABLE`'s `OPTIONS` table: lines
//! of at most 72 characters (`RFC_DB_OPT-TEXT` is CHAR72).
//!
//! SAP reads the lines as consecutive pieces of one Open SQL condition, and a
//! token may not run across a line end. So the clause is cut into tokens — runs of
//! non-blank characters, where a quoted literal (`'O''Brien'`, `'New York'`)
//! belongs to its token whole, blanks included — and the tokens are packed
//! greedily into lines. Blanks outside literals collapse to one; blanks inside a
//! literal are kept exactly. A literal whose token is longer than 72 characters
//! cannot be written as `OPTIONS` at all and is refused.

use crate::http::ApiError;

/// Characters in one `OPTIONS` line.
pub(crate) const LINE: usize = 72;

/// Splits `clause` into tokens (see the module docs).
fn tokens(clause: &str) -> Result<Vec<String>, ApiError> {
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
                    Some(inner) => current.push(inner),
                    None => {
                        return Err(ApiError::BadRequest(
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
/// 400 for an unclosed literal or a token longer than one line.
pub(crate) fn option_lines(clause: &str) -> Result<Vec<String>, ApiError> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for token in tokens(clause)? {
        let len = token.chars().count();
        if len > LINE {
            let shown: String = token.chars().take(20).collect();
            return Err(ApiError::BadRequest(format!(
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
        let exactly = format!("'{}'", "y".repeat(70));
        assert_eq!(option_lines(&exactly).unwrap(), vec![exactly.clone()]);
    }
}
