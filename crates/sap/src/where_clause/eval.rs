//! A parsed WHERE clause and its evaluation against a row (the simulator's use):
//! values compared as CHAR, `LIKE` by dynamic programming (linear in the pattern
//! times the value, whatever the number of `%`).

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub(super) fn from_symbol(symbol: &str) -> Option<Self> {
        Some(match symbol {
            "=" => Self::Eq,
            "<>" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }

    pub(super) fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "EQ" => Self::Eq,
            "NE" => Self::Ne,
            "LT" => Self::Lt,
            "LE" => Self::Le,
            "GT" => Self::Gt,
            "GE" => Self::Ge,
            _ => return None,
        })
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cond {
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
    /// `field IS NULL`.
    IsNull(String),
}

/// A WHERE clause that passed the grammar (`where_clause::parse_rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition(Cond);

impl Condition {
    pub(super) fn new(cond: Cond) -> Self {
        Self(cond)
    }

    /// Whether a row holds; `get` returns a field's value (`""` when it has none).
    pub fn eval<'a>(&self, get: &impl Fn(&str) -> &'a str) -> bool {
        eval(&self.0, get)
    }
}

fn eval<'a>(cond: &Cond, get: &impl Fn(&str) -> &'a str) -> bool {
    match cond {
        Cond::True => true,
        Cond::And(a, b) => eval(a, get) && eval(b, get),
        Cond::Or(a, b) => eval(a, get) || eval(b, get),
        Cond::Not(a) => !eval(a, get),
        Cond::Cmp(f, op, v) => {
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
        Cond::Like(f, pattern, escape) => like(pattern, get(f).trim_end(), *escape),
        Cond::Between(f, low, high) => {
            let x = get(f).trim_end();
            x >= low.as_str() && x <= high.as_str()
        }
        Cond::In(f, values) => {
            let x = get(f).trim_end();
            values.iter().any(|v| v == x)
        }
        // CHAR columns of a transparent table are NOT NULL; the simulator stores none.
        Cond::IsNull(_) => false,
    }
}

/// One element of a `LIKE` pattern.
enum Piece {
    Any,
    One,
    Char(char),
}

/// Whether `value` matches the `LIKE` `pattern` (`%` any string, `_` one character,
/// `escape` makes the next character literal; an escape at the end matches nothing).
fn like(pattern: &str, value: &str, escape: Option<char>) -> bool {
    let mut pieces = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pieces.push(match c {
            c if Some(c) == escape => match chars.next() {
                Some(literal) => Piece::Char(literal),
                None => return false,
            },
            '%' => Piece::Any,
            '_' => Piece::One,
            c => Piece::Char(c),
        });
    }
    let value: Vec<char> = value.chars().collect();
    // matched[j]: the pieces so far match the first j characters of the value.
    let mut matched = vec![false; value.len() + 1];
    matched[0] = true;
    for piece in &pieces {
        let mut next = vec![false; value.len() + 1];
        match piece {
            Piece::Any => {
                let mut reached = false;
                for (j, slot) in next.iter_mut().enumerate() {
                    reached |= matched[j];
                    *slot = reached;
                }
            }
            Piece::One | Piece::Char(_) => {
                for (j, c) in value.iter().enumerate() {
                    let fits = match piece {
                        Piece::Char(p) => p == c,
                        _ => true,
                    };
                    next[j + 1] = matched[j] && fits;
                }
            }
        }
        matched = next;
    }
    matched[value.len()]
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("O%Lt_", "O'Brien Ltd", None));
        assert!(!like("%GmbH", "O'Brien Ltd", None));
        assert!(like("%", "", None));
        assert!(!like("_", "", None));
        assert!(like("50#%", "50%", Some('#')));
        assert!(!like("50#%", "500", Some('#')));
        assert!(!like("50#", "50", Some('#')));
        // Many '%' against a long value stays fast (no backtracking).
        let pattern = "%a".repeat(30) + "%b";
        assert!(!like(&pattern, &"a".repeat(200), None));
    }
}
