//! Tokens of the joined `OPTIONS` text, as ABAP's scanner cuts them: runs of name
//! characters, quoted literals (`''` is a quote inside one), comparison operators,
//! `(`, `)` and `,`. Blanks separate tokens; whether a token had a blank before it
//! is kept ([`Token::glued`]) for the parser, which allows tokens to touch only
//! inside an `IN` list.
//!
//! Refused here: any character outside that alphabet (each with the reason it
//! matters: `"` comments, `@` host variables, `~` other tables' columns, `-`
//! structure components, backquote literals, …), a literal not closed in its row,
//! and a token that starts at the beginning of a row while the row before fills
//! all 72 columns, or runs over a row end — SAP would read it together with what
//! precedes it.

use super::{ROW_WIDTH, WhereError};

/// A token's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A name or keyword, upper case.
    Word(String),
    /// A numeric literal: digits with an optional leading `-`.
    Number(String),
    /// A quoted literal's value (`''` read as `'`).
    Literal(String),
    /// `=`, `<>`, `<`, `>`, `<=` or `>=`.
    Op(&'static str),
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// `,`.
    Comma,
}

/// One token and where it starts in the joined text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) at: usize,
    /// No blank between this token and the one before.
    pub(super) glued: bool,
}

impl Token {
    /// The token as a message names it.
    pub(super) fn describe(&self) -> String {
        match &self.kind {
            Kind::Word(w) | Kind::Number(w) => w.clone(),
            Kind::Literal(s) => format!("the literal '{}'", s.replace('\'', "''")),
            Kind::Op(op) => format!("'{op}'"),
            Kind::Open => "'('".into(),
            Kind::Close => "')'".into(),
            Kind::Comma => "','".into(),
        }
    }
}

const OPERATORS: [&str; 6] = ["=", "<>", "<", ">", "<=", ">="];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '/'
}

/// Cuts `text` (the joined rows) into tokens.
///
/// # Errors
/// The refusals in the module docs, at the offending character.
pub(super) fn tokens(text: &[char]) -> Result<Vec<Token>, WhereError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut glued = false;
    while let Some(&c) = text.get(i) {
        if c == ' ' {
            glued = false;
            i += 1;
            continue;
        }
        if i > 0 && i.is_multiple_of(ROW_WIDTH) && text[i - 1] != ' ' {
            return Err(WhereError::at(
                i,
                "the row before fills all 72 columns and this row goes on without a blank: \
                 SAP reads the rows end to end, so the two would run together",
            ));
        }
        let (kind, end) = match c {
            '\'' => literal(text, i)?,
            '(' => (Kind::Open, i + 1),
            ')' => (Kind::Close, i + 1),
            ',' => (Kind::Comma, i + 1),
            '<' | '>' | '=' => operator(text, i)?,
            '-' if !(i + 1).is_multiple_of(ROW_WIDTH)
                && text.get(i + 1).is_some_and(char::is_ascii_digit) =>
            {
                let end = run(text, i + 1, |c| c.is_ascii_digit())?;
                (Kind::Number(text[i..end].iter().collect()), end)
            }
            c if is_name_char(c) => {
                let end = run(text, i, is_name_char)?;
                let word: String = text[i..end].iter().collect();
                if word.bytes().all(|b| b.is_ascii_digit()) {
                    (Kind::Number(word), end)
                } else {
                    (Kind::Word(word.to_ascii_uppercase()), end)
                }
            }
            other => return Err(WhereError::at(i, refused_character(other))),
        };
        tokens.push(Token { kind, at: i, glued });
        glued = true;
        i = end;
    }
    Ok(tokens)
}

/// The end of the run of `accept` characters from `start`; a run may not cross a
/// row end.
fn run(text: &[char], start: usize, accept: impl Fn(char) -> bool) -> Result<usize, WhereError> {
    let mut end = start;
    while text.get(end).is_some_and(|&c| accept(c)) {
        end += 1;
        if end.is_multiple_of(ROW_WIDTH) && text.get(end).is_some_and(|&c| accept(c)) {
            return Err(WhereError::at(
                end,
                "a token runs from one row into the next: SAP reads the rows end to end, \
                 keep the 72nd column blank",
            ));
        }
    }
    Ok(end)
}

fn operator(text: &[char], start: usize) -> Result<(Kind, usize), WhereError> {
    let end = run(text, start, |c| matches!(c, '<' | '>' | '='))?;
    let op: String = text[start..end].iter().collect();
    match OPERATORS.iter().find(|known| **known == op) {
        Some(known) => Ok((Kind::Op(known), end)),
        None => Err(WhereError::at(
            start,
            format!("'{op}' is not a comparison operator (= <> < > <= >=)"),
        )),
    }
}

/// A quoted literal from the quote at `start`; it must close in its own row.
fn literal(text: &[char], start: usize) -> Result<(Kind, usize), WhereError> {
    let row_end = (start / ROW_WIDTH + 1) * ROW_WIDTH;
    let mut value = String::new();
    let mut i = start + 1;
    while i < row_end {
        match text[i] {
            '\'' if i + 1 < row_end && text[i + 1] == '\'' => {
                value.push('\'');
                i += 2;
            }
            '\'' => return Ok((Kind::Literal(value), i + 1)),
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(WhereError::at(
        start,
        "the quoted literal opened here does not close in its row (an unclosed literal, \
         or one continued in the next row, which the agent does not pass on)",
    ))
}

fn refused_character(c: char) -> String {
    let why = match c {
        '"' => "starts an ABAP comment; comments are not allowed",
        '@' => "marks an ABAP host variable; only literals are allowed",
        '~' => {
            "selects a column of a named table (table~column); only fields of the table read are allowed"
        }
        '-' => {
            "reads a structure component or host variable (name-component); only fields and literals are allowed"
        }
        '`' => "opens a string literal; use a quoted literal '...'",
        '*' => "is not allowed: no arithmetic, no '*' select list, no comments",
        '.' | ';' => "would end the statement; the clause is one condition",
        '+' | '%' | '|' | '&' => "is not allowed: no arithmetic or string expressions",
        ':' | '?' => "marks a parameter, which is not allowed",
        _ => "is not allowed outside a quoted literal",
    };
    let shown = if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", u32::from(c))
    };
    format!("{shown} {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(rows: &[&str]) -> Result<Vec<Token>, WhereError> {
        tokens(&super::super::rows::abap_text(rows)?)
    }

    fn kinds(rows: &[&str]) -> Vec<Kind> {
        lex(rows).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn tokens_and_glue() {
        let toks = lex(&["land1 <> 'O''Brien' AND KUNNR IN ('1',-2)"]).unwrap();
        let found: Vec<&Kind> = toks.iter().map(|t| &t.kind).collect();
        assert_eq!(
            found,
            [
                &Kind::Word("LAND1".into()),
                &Kind::Op("<>"),
                &Kind::Literal("O'Brien".into()),
                &Kind::Word("AND".into()),
                &Kind::Word("KUNNR".into()),
                &Kind::Word("IN".into()),
                &Kind::Open,
                &Kind::Literal("1".into()),
                &Kind::Comma,
                &Kind::Number("-2".into()),
                &Kind::Close,
            ]
        );
        let glued: Vec<bool> = toks.iter().map(|t| t.glued).collect();
        assert_eq!(
            glued,
            [
                false, false, false, false, false, false, false, true, true, true, true
            ]
        );
        assert_eq!(
            kinds(&["A", "B"]),
            [Kind::Word("A".into()), Kind::Word("B".into())]
        );
    }

    #[test]
    fn a_token_across_a_full_row_is_refused() {
        let row = format!("{}KUNN", " ".repeat(68));
        assert_eq!(row.len(), 72);
        let e = lex(&[&row, "R = '1'"]).unwrap_err();
        assert!(e.to_string().starts_with("row 2, column 1:"), "{e}");
        let row = format!("{}=", " ".repeat(71));
        assert!(lex(&[&row, "'1'"]).is_err());
        let row = format!("{}'x'", " ".repeat(69));
        assert!(lex(&[&row, "'y'"]).is_err(), "'' across rows");
        // A full row ending in a blank, or a next row starting with one, is fine.
        let row = format!("{}KUNN ", " ".repeat(67));
        assert!(lex(&[&row, "R"]).is_ok());
        let row = format!("{}KUNN", " ".repeat(68));
        assert!(lex(&[&row, " R"]).is_ok());
    }

    #[test]
    fn literals_close_in_their_row() {
        assert!(lex(&["NAME1 = 'abc"]).is_err());
        assert!(lex(&["NAME1 = 'abc", "def'"]).is_err());
        assert!(lex(&["NAME1 = 'ab''"]).is_err());
        assert_eq!(
            kinds(&["'a \"b\" SELECT * ~ @'"]),
            [Kind::Literal("a \"b\" SELECT * ~ @".into())]
        );
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused_with_a_reason() {
        for (text, why) in [
            ("A = '1' \" c", "comment"),
            ("A = @B", "host variable"),
            ("T~A = '1'", "table~column"),
            ("SY-UNAME = '1'", "structure component"),
            ("A = `x`", "string literal"),
            ("A = '1'. SELECT", "end the statement"),
            ("A\u{a0}= '1'", "U+00A0"),
            ("A =< '1'", "not a comparison operator"),
        ] {
            let e = lex(&[text]).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
