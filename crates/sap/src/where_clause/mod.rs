//! The dynamic WHERE clause of `RFC_READ_TABLE` (its `OPTIONS` rows): the one
//! grammar both the simulator (which evaluates it) and the agent (which refuses
//! what lies outside it before SAP sees it) use.
//!
//! # How SAP reads the rows
//!
//! `RFC_READ_TABLE` runs `SELECT … FROM (QUERY_TABLE) … WHERE (OPTIONS)`: the rows
//! are a dynamic token of ABAP SQL. ABAP's documentation of dynamic tokens
//! ("sql_cond - (cond_syntax)", 7.40 to 7.58) says the syntax may be distributed
//! over several rows, that literals may span rows, that a row starting with `*` is
//! a comment and that a row's content from its first `"` on is a comment. A row is
//! `RFC_DB_OPT-TEXT`, CHAR 72: its trailing blanks are part of it, and the rows are
//! read end to end — which is why SAP's own RFC_READ_TABLE adapters tell users to
//! keep the 72nd column of a row blank.
//!
//! [`parse_rows`] builds that same text ([`rows`]: each row blank-padded to
//! [`ROW_WIDTH`], concatenated) and checks it, and refuses every construct whose
//! reading the documentation leaves open, so what is checked is what SAP runs under
//! any reading: a token or literal running from one row into the next, comment rows
//! and `"` comments, control characters, rows wider than 72.
//!
//! # The grammar (an allowlist)
//!
//! ```text
//! clause    := [ or ]
//! or        := and { OR and }
//! and       := not { AND not }
//! not       := NOT not | "( " or " )" | predicate
//! predicate := field op value
//!            | field [NOT] BETWEEN value AND value
//!            | field [NOT] LIKE literal [ESCAPE literal]
//!            | field [NOT] IN (value {, value})
//!            | field IS [NOT] NULL
//! op        := = | <> | < | > | <= | >= | EQ | NE | LT | LE | GT | GE
//! value     := 'quoted literal' | [-]digits
//! ```
//!
//! `field` is a field name of the table read (upper case after reading,
//! `/NAMESPACE/NAME` allowed) that the caller's column test accepts; keywords and
//! names are case-insensitive. Tokens are separated by blanks, as ABAP requires;
//! only inside an `IN` list may `(`, `,` and `)` touch the literals. Nothing else
//! is accepted: no subquery (`IN ( SELECT …`, `EXISTS`, `= ( SELECT …`), no
//! `table~column`, no host variable (`@x`, `x-y`), no dynamic token (`(x)`), no
//! function, arithmetic, comment or second statement. Every refusal says where
//! (row and column) and why.
//!
//! # Evaluation (the simulator)
//!
//! Values are compared as CHAR: case-sensitive, trailing blanks ignored, no
//! conversion exit (`KUNNR = '1000'` does not find `0000001000`). `LIKE` knows `%`
//! and `_`; nothing stored is NULL.

mod eval;
mod lexer;
mod parser;
mod rows;
#[cfg(test)]
mod tests;

pub use eval::Condition;

/// Characters in one `OPTIONS` row (`RFC_DB_OPT-TEXT` is CHAR 72).
pub const ROW_WIDTH: usize = 72;

/// The most `OPTIONS` rows a clause may have: 72,000 characters, room for an `IN`
/// list of several thousand values, and a bound on what one call makes the agent
/// read.
pub const MAX_ROWS: usize = 1000;

/// The deepest nesting of parentheses and `NOT`s: far beyond any hand-written
/// clause, and a bound on the parser's recursion.
pub const MAX_DEPTH: usize = 64;

/// Why a WHERE clause is refused: where (row and column, 1-based) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhereError {
    at: Option<(usize, usize)>,
    reason: String,
}

impl std::fmt::Display for WhereError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((row, column)) = self.at {
            write!(f, "row {row}, column {column}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for WhereError {}

impl WhereError {
    /// An error at character `index` of the joined text.
    fn at(index: usize, reason: impl Into<String>) -> Self {
        Self {
            at: Some((index / ROW_WIDTH + 1, index % ROW_WIDTH + 1)),
            reason: reason.into(),
        }
    }

    /// An error about the clause as a whole.
    fn whole(reason: impl Into<String>) -> Self {
        Self {
            at: None,
            reason: reason.into(),
        }
    }

    /// The reason without the position.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Parses the `OPTIONS` rows of a table read into a condition.
///
/// `column` is asked about every field name the clause compares (upper case,
/// already a valid DDIC field name): the simulator answers from its table, the
/// agent, which does not know the table, accepts any field name.
///
/// # Errors
/// A [`WhereError`] for anything outside the grammar (module docs).
pub fn parse_rows<S: AsRef<str>>(
    rows: &[S],
    column: &impl Fn(&str) -> bool,
) -> Result<Condition, WhereError> {
    let text = rows::abap_text(rows)?;
    let tokens = lexer::tokens(&text)?;
    parser::parse(&tokens, column).map(Condition::new)
}

/// Whether `name` is a DDIC field name: 1 to 30 upper-case characters `A-Z 0-9 _`,
/// not starting with a digit, or `/NAMESPACE/NAME`. Names of other forms
/// (`TABLE~FIELD`, `STRUCT-COMPONENT`, `@VAR`, `(DYNAMIC)`) are not field names.
pub fn is_field_name(name: &str) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    if name.is_empty() || name.len() > 30 {
        return false;
    }
    match name.strip_prefix('/') {
        Some(rest) => rest
            .split_once('/')
            .is_some_and(|(space, field)| plain(space) && plain(field)),
        None => plain(name) && !name.starts_with(|c: char| c.is_ascii_digit()),
    }
}
