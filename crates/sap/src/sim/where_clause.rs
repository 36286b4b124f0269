//! The dynamic WHERE clause of `RFC_READ_TABLE` (its `OPTIONS` lines joined): a
//! small Open SQL subset, parsed into a condition tree and evaluated per row.
//!
//! Supported: comparisons with `EQ NE LT LE GT GE` and `= <> < > <= >=`,
//! `[NOT] LIKE 'pattern' [ESCAPE 'c']` (`%` any string, `_` one character),
//! `[NOT] BETWEEN a AND b`, `[NOT] IN ('a', 'b')`, `AND`, `OR`, `NOT` and
//! parentheses, with Open SQL precedence (NOT > AND > OR). Literals are quoted
//! (`'O''Brien'`) or bare numbers. Keywords and field names are case-insensitive,
//! values are compared as CHAR (case-sensitive, trailing blanks ignored). As on a
//! real system there is no conversion exit: `KUNNR = '1000'` does not find
//! `0000001000`.

use std::fmt;

/// A parse error; `RFC_READ_TABLE` turns it into `OPTION_NOT_VALID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WhereError(pub(crate) String);

impl fmt::Display for WhereError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    /// No WHERE clause: every row.
    True,
    /// Both hold.
    And(Box<Cond>, Box<Cond>),
    /// Either holds.
    Or(Box<Cond>, Box<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// `field op value`.
    Cmp(String, Op, String),
    /// `field LIKE pattern [ESCAPE c]`.
    Like(String, String, Option<char>),
    /// `field BETWEEN low AND high`.
    Between(String, String, String),
    /// `field IN (values)`.
    In(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Lit(String),
    Sym(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Tok>, WhereError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(WhereError("unterminated literal".into())),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            toks.push(Tok::Lit(s));
        } else if let Some(sym) = ["<>", "<=", ">=", "=", "<", ">", "(", ")", ","]
            .into_iter()
            .find(|s| chars[i..].starts_with(&s.chars().collect::<Vec<_>>()))
        {
            toks.push(Tok::Sym(sym));
            i += sym.len();
        } else if c.is_alphanumeric() || matches!(c, '_' | '/' | '~' | '-' | '.' | '+') {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || matches!(chars[i], '_' | '/' | '~' | '-' | '.' | '+'))
            {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(WhereError(format!("unexpected character '{c}'")));
        }
    }
    Ok(toks)
}

struct Parser<'a, F: Fn(&str) -> bool> {
    toks: Vec<Tok>,
    pos: usize,
    known: &'a F,
}

/// Parses a WHERE clause; `known` says whether a (upper-case) field exists.
pub(crate) fn parse(text: &str, known: &impl Fn(&str) -> bool) -> Result<Cond, WhereError> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Ok(Cond::True);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        known,
    };
    let cond = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(cond),
        Some(t) => Err(WhereError(format!("unexpected {t:?} after condition"))),
    }
}

impl<F: Fn(&str) -> bool> Parser<'_, F> {
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.peek_kw(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        let hit = matches!(self.toks.get(self.pos), Some(Tok::Sym(s)) if *s == sym);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<Cond, WhereError> {
        let mut left = self.and()?;
        while self.eat_kw("OR") {
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, WhereError> {
        let mut left = self.not()?;
        while self.eat_kw("AND") {
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, WhereError> {
        if self.eat_kw("NOT") {
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        if self.eat_sym("(") {
            let inner = self.or()?;
            if !self.eat_sym(")") {
                return Err(WhereError("missing ')'".into()));
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn field(&mut self) -> Result<String, WhereError> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                let name = w.rsplit('~').next().unwrap_or(w).to_ascii_uppercase();
                if !(self.known)(&name) {
                    return Err(WhereError(format!("unknown field {name}")));
                }
                self.pos += 1;
                Ok(name)
            }
            other => Err(WhereError(format!("field name expected, found {other:?}"))),
        }
    }

    fn literal(&mut self) -> Result<String, WhereError> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Lit(s)) => {
                self.pos += 1;
                Ok(s.trim_end().to_owned())
            }
            Some(Tok::Word(w)) if w.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                self.pos += 1;
                Ok(w)
            }
            other => Err(WhereError(format!("literal expected, found {other:?}"))),
        }
    }

    fn comparison(&mut self) -> Result<Cond, WhereError> {
        let field = self.field()?;
        let negated = self.eat_kw("NOT");
        let cond = if self.eat_kw("LIKE") {
            let pattern = self.literal()?;
            let escape = if self.eat_kw("ESCAPE") {
                self.literal()?.chars().next()
            } else {
                None
            };
            Cond::Like(field, pattern, escape)
        } else if self.eat_kw("BETWEEN") {
            let low = self.literal()?;
            if !self.eat_kw("AND") {
                return Err(WhereError("AND expected in BETWEEN".into()));
            }
            Cond::Between(field, low, self.literal()?)
        } else if self.eat_kw("IN") {
            if !self.eat_sym("(") {
                return Err(WhereError("'(' expected after IN".into()));
            }
            let mut values = vec![self.literal()?];
            while self.eat_sym(",") {
                values.push(self.literal()?);
            }
            if !self.eat_sym(")") {
                return Err(WhereError("')' expected after IN list".into()));
            }
            Cond::In(field, values)
        } else if negated {
            return Err(WhereError("LIKE, BETWEEN or IN expected after NOT".into()));
        } else {
            let op = self.operator()?;
            Cond::Cmp(field, op, self.literal()?)
        };
        Ok(if negated {
            Cond::Not(Box::new(cond))
        } else {
            cond
        })
    }

    fn operator(&mut self) -> Result<Op, WhereError> {
        let op = match self.toks.get(self.pos) {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("<>")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Word(w)) => match w.to_ascii_uppercase().as_str() {
                "EQ" => Op::Eq,
                "NE" => Op::Ne,
                "LT" => Op::Lt,
                "LE" => Op::Le,
                "GT" => Op::Gt,
                "GE" => Op::Ge,
                other => return Err(WhereError(format!("operator expected, found {other}"))),
            },
            other => return Err(WhereError(format!("operator expected, found {other:?}"))),
        };
        self.pos += 1;
        Ok(op)
    }
}

impl Cond {
    /// Whether a row holds; `get` returns a field's (trimmed) value.
    pub(crate) fn eval<'a>(&self, get: &impl Fn(&str) -> &'a str) -> bool {
        match self {
            Self::True => true,
            Self::And(a, b) => a.eval(get) && b.eval(get),
            Self::Or(a, b) => a.eval(get) || b.eval(get),
            Self::Not(a) => !a.eval(get),
            Self::Cmp(f, op, v) => {
                let x = get(f).trim_end();
                let v = v.as_str();
                match op {
                    Op::Eq => x == v,
                    Op::Ne => x != v,
                    Op::Lt => x < v,
                    Op::Le => x <= v,
                    Op::Gt => x > v,
                    Op::Ge => x >= v,
                }
            }
            Self::Like(f, p, esc) => {
                let p: Vec<char> = p.chars().collect();
                let v: Vec<char> = get(f).trim_end().chars().collect();
                like(&p, &v, *esc)
            }
            Self::Between(f, lo, hi) => {
                let x = get(f).trim_end();
                x >= lo.as_str() && x <= hi.as_str()
            }
            Self::In(f, vs) => {
                let x = get(f).trim_end();
                vs.iter().any(|v| v == x)
            }
        }
    }
}

fn like(p: &[char], v: &[char], esc: Option<char>) -> bool {
    match p.split_first() {
        None => v.is_empty(),
        Some((c, rest)) if Some(*c) == esc => match rest.split_first() {
            Some((lit, rest2)) => v.first() == Some(lit) && like(rest2, &v[1..], esc),
            None => false,
        },
        Some(('%', rest)) => (0..=v.len()).any(|i| like(rest, &v[i..], esc)),
        Some(('_', rest)) => !v.is_empty() && like(rest, &v[1..], esc),
        Some((c, rest)) => v.first() == Some(c) && like(rest, &v[1..], esc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(f: &str) -> bool {
        matches!(f, "LAND1" | "NAME1" | "ORT01" | "KUNNR")
    }

    fn eval(text: &str, row: &[(&str, &str)]) -> Result<bool, WhereError> {
        let cond = parse(text, &known)?;
        let get = |f: &str| row.iter().find(|(k, _)| *k == f).map_or("", |(_, v)| *v);
        Ok(cond.eval(&get))
    }

    #[test]
    fn operators_precedence_and_literals() {
        let row = [
            ("LAND1", "DE"),
            ("NAME1", "O'Brien Ltd"),
            ("ORT01", "Köln"),
            ("KUNNR", "0000001000"),
        ];
        assert_eq!(eval("LAND1 EQ 'DE'", &row), Ok(true));
        assert_eq!(eval("land1 = 'DE ' AND ORT01 <> 'Bonn'", &row), Ok(true));
        assert_eq!(eval("NAME1 = 'O''Brien Ltd'", &row), Ok(true));
        assert_eq!(
            eval("LAND1 = 'US' OR LAND1 = 'DE' AND ORT01 = 'Bonn'", &row),
            Ok(false)
        );
        assert_eq!(
            eval(
                "( LAND1 = 'US' OR LAND1 = 'DE' ) AND NOT ORT01 = 'Bonn'",
                &row
            ),
            Ok(true)
        );
        assert_eq!(eval("NAME1 LIKE 'O%Lt_'", &row), Ok(true));
        assert_eq!(eval("NAME1 NOT LIKE '%GmbH'", &row), Ok(true));
        assert_eq!(
            eval("KUNNR BETWEEN '0000000999' AND '0000001001'", &row),
            Ok(true)
        );
        assert_eq!(eval("LAND1 IN ('FR', 'DE')", &row), Ok(true));
        assert_eq!(
            eval("KUNNR GE '0000001000' AND KUNNR LT '0000001001'", &row),
            Ok(true)
        );
        assert_eq!(eval("KUNNR = '1000'", &row), Ok(false));
        assert_eq!(eval("", &row), Ok(true));
    }

    #[test]
    fn errors() {
        assert!(parse("BOGUS = 'X'", &known).is_err());
        assert!(parse("LAND1 = 'DE", &known).is_err());
        assert!(parse("LAND1 'DE'", &known).is_err());
        assert!(parse("(LAND1 = 'DE'", &known).is_err());
        assert!(parse("LAND1 = 'DE' LAND1", &known).is_err());
        assert!(parse("LAND1 = 'DE' ; DROP", &known).is_err());
    }
}
