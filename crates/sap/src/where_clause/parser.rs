//! The grammar of `where_clause` (module docs there) over the lexer's tokens, with
//! Open SQL precedence (NOT > AND > OR). Recursion is bounded by [`MAX_DEPTH`].

use super::eval::{Cond, Op};
use super::lexer::{Kind, Token};
use super::{MAX_DEPTH, WhereError, is_field_name};

/// Parses the tokens of a clause; no tokens is the condition that always holds.
///
/// # Errors
/// The first token outside the grammar, with what was expected.
pub(super) fn parse(tokens: &[Token], column: &impl Fn(&str) -> bool) -> Result<Cond, WhereError> {
    if tokens.is_empty() {
        return Ok(Cond::True);
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        column,
    };
    let cond = parser.or()?;
    match parser.peek() {
        None => Ok(cond),
        Some(_) => Err(parser.unexpected("AND, OR or the end of the clause")),
    }
}

struct Parser<'a, F> {
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
    column: &'a F,
}

impl<F: Fn(&str) -> bool> Parser<'_, F> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// Takes the next token; unless `glue_ok`, it must have a blank before it.
    fn advance(&mut self, glue_ok: bool) -> Result<Token, WhereError> {
        let Some(token) = self.tokens.get(self.pos) else {
            return Err(self.unexpected("a token"));
        };
        if token.glued && !glue_ok {
            return Err(WhereError::at(
                token.at,
                format!(
                    "{} must be separated from the token before it by a blank",
                    token.describe()
                ),
            ));
        }
        self.pos += 1;
        Ok(token.clone())
    }

    fn at_word(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: Kind::Word(w), .. }) if w == keyword)
    }

    fn eat_word(&mut self, keyword: &str) -> Result<bool, WhereError> {
        let hit = self.at_word(keyword);
        if hit {
            self.advance(false)?;
        }
        Ok(hit)
    }

    fn expect_word(&mut self, keyword: &str) -> Result<(), WhereError> {
        if self.eat_word(keyword)? {
            Ok(())
        } else {
            Err(self.unexpected(keyword))
        }
    }

    fn eat(&mut self, kind: &Kind, glue_ok: bool) -> Result<bool, WhereError> {
        let hit = self.peek().is_some_and(|t| t.kind == *kind);
        if hit {
            self.advance(glue_ok)?;
        }
        Ok(hit)
    }

    /// The error for the current token (or the end) where `expected` should be.
    fn unexpected(&self, expected: &str) -> WhereError {
        match self.peek() {
            None => WhereError::whole(format!("the clause ends where {expected} should follow")),
            Some(Token {
                kind: Kind::Word(w),
                at,
                ..
            }) if w == "SELECT" || w == "EXISTS" => WhereError::at(
                *at,
                format!(
                    "{w}: subqueries are not allowed; the clause may only compare fields of \
                     the table read with literals"
                ),
            ),
            Some(token) => WhereError::at(
                token.at,
                format!("{expected} expected, found {}", token.describe()),
            ),
        }
    }

    fn nested(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<Cond, WhereError>,
    ) -> Result<Cond, WhereError> {
        if self.depth == MAX_DEPTH {
            return Err(self.unexpected_depth());
        }
        self.depth += 1;
        let cond = inner(self);
        self.depth -= 1;
        cond
    }

    fn unexpected_depth(&self) -> WhereError {
        let reason = format!("parentheses and NOTs nest deeper than {MAX_DEPTH}");
        match self.peek() {
            Some(token) => WhereError::at(token.at, reason),
            None => WhereError::whole(reason),
        }
    }

    fn or(&mut self) -> Result<Cond, WhereError> {
        let mut left = self.and()?;
        while self.eat_word("OR")? {
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, WhereError> {
        let mut left = self.not()?;
        while self.eat_word("AND")? {
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, WhereError> {
        if self.eat_word("NOT")? {
            return self.nested(|p| Ok(Cond::Not(Box::new(p.not()?))));
        }
        if self.eat(&Kind::Open, false)? {
            return self.nested(|p| {
                let inner = p.or()?;
                if p.eat(&Kind::Close, false)? {
                    Ok(inner)
                } else {
                    Err(p.unexpected("')'"))
                }
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Cond, WhereError> {
        let field = self.field()?;
        if self.eat_word("IS")? {
            let negated = self.eat_word("NOT")?;
            self.expect_word("NULL")?;
            let null = Cond::IsNull(field);
            return Ok(if negated {
                Cond::Not(Box::new(null))
            } else {
                null
            });
        }
        let negated = self.eat_word("NOT")?;
        let cond = if self.eat_word("LIKE")? {
            let pattern = self.literal()?;
            let escape = if self.eat_word("ESCAPE")? {
                Some(self.escape()?)
            } else {
                None
            };
            Cond::Like(field, pattern, escape)
        } else if self.eat_word("BETWEEN")? {
            let low = self.value(false)?;
            self.expect_word("AND")?;
            Cond::Between(field, low, self.value(false)?)
        } else if self.eat_word("IN")? {
            if !self.eat(&Kind::Open, false)? {
                return Err(self.unexpected("'(' and a list of literals"));
            }
            let mut values = vec![self.value(true)?];
            while self.eat(&Kind::Comma, true)? {
                values.push(self.value(true)?);
            }
            if !self.eat(&Kind::Close, true)? {
                return Err(self.unexpected("',' or ')'"));
            }
            Cond::In(field, values)
        } else if negated {
            return Err(self.unexpected("LIKE, BETWEEN or IN"));
        } else {
            let op = self.operator()?;
            Cond::Cmp(field, op, self.value(false)?)
        };
        Ok(if negated {
            Cond::Not(Box::new(cond))
        } else {
            cond
        })
    }

    fn field(&mut self) -> Result<String, WhereError> {
        let name = match self.peek() {
            Some(Token {
                kind: Kind::Word(w),
                ..
            }) if is_field_name(w) => w.clone(),
            _ => return Err(self.unexpected("a field name")),
        };
        if !(self.column)(&name) {
            let at = self.peek().map_or(0, |t| t.at);
            return Err(WhereError::at(at, format!("unknown field {name}")));
        }
        self.advance(false)?;
        Ok(name)
    }

    /// A literal or number; CHAR literals lose their trailing blanks.
    fn value(&mut self, glue_ok: bool) -> Result<String, WhereError> {
        match self.peek().map(|t| &t.kind) {
            Some(Kind::Literal(_) | Kind::Number(_)) => match self.advance(glue_ok)?.kind {
                Kind::Literal(s) => Ok(s.trim_end().to_owned()),
                Kind::Number(n) => Ok(n),
                _ => Err(self.unexpected("a literal")),
            },
            _ => Err(self.unexpected("a literal ('text' or a number)")),
        }
    }

    fn literal(&mut self) -> Result<String, WhereError> {
        match self.peek().map(|t| &t.kind) {
            Some(Kind::Literal(_)) => self.value(false),
            _ => Err(self.unexpected("a quoted literal")),
        }
    }

    fn escape(&mut self) -> Result<char, WhereError> {
        let at = self.peek().map_or(0, |t| t.at);
        let text = self.literal()?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(WhereError::at(
                at,
                "ESCAPE takes a literal of one character",
            )),
        }
    }

    fn operator(&mut self) -> Result<Op, WhereError> {
        let op = match self.peek().map(|t| &t.kind) {
            Some(Kind::Op(op)) => Op::from_symbol(op),
            Some(Kind::Word(w)) => Op::from_word(w),
            _ => None,
        };
        match op {
            Some(op) => {
                self.advance(false)?;
                Ok(op)
            }
            None => Err(self.unexpected(
                "a comparison (= <> < > <= >= EQ NE LT LE GT GE), IS, NOT, LIKE, BETWEEN or IN",
            )),
        }
    }
}
