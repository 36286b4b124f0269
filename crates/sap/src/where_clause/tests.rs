//! The grammar against rows: evaluation (the simulator's side) and what lies
//! outside the grammar. The agent's table of hostile clauses is in its executor
//! tests; this covers the grammar's own corners.

use super::*;

fn known(f: &str) -> bool {
    matches!(
        f,
        "LAND1" | "NAME1" | "ORT01" | "KUNNR" | "STCEG" | "/BIC/ZF"
    )
}

fn eval(text: &str, row: &[(&str, &str)]) -> Result<bool, WhereError> {
    let cond = parse_rows(&[text], &known)?;
    let get = |f: &str| row.iter().find(|(k, _)| *k == f).map_or("", |(_, v)| *v);
    Ok(cond.eval(&get))
}

const ROW: [(&str, &str); 4] = [
    ("LAND1", "DE"),
    ("NAME1", "O'Brien Ltd"),
    ("ORT01", "Köln"),
    ("KUNNR", "0000001000"),
];

#[test]
fn operators_precedence_and_literals() {
    assert_eq!(eval("LAND1 EQ 'DE'", &ROW), Ok(true));
    assert_eq!(eval("land1 = 'DE ' AND ORT01 <> 'Bonn'", &ROW), Ok(true));
    assert_eq!(eval("NAME1 = 'O''Brien Ltd'", &ROW), Ok(true));
    assert_eq!(
        eval("LAND1 = 'US' OR LAND1 = 'DE' AND ORT01 = 'Bonn'", &ROW),
        Ok(false)
    );
    assert_eq!(
        eval(
            "( LAND1 = 'US' OR LAND1 = 'DE' ) AND NOT ORT01 = 'Bonn'",
            &ROW
        ),
        Ok(true)
    );
    assert_eq!(eval("NAME1 LIKE 'O%Lt_'", &ROW), Ok(true));
    assert_eq!(eval("NAME1 NOT LIKE '%GmbH'", &ROW), Ok(true));
    assert_eq!(eval("NAME1 LIKE 'O''B%' ESCAPE '#'", &ROW), Ok(true));
    assert_eq!(
        eval("KUNNR BETWEEN '0000000999' AND '0000001001'", &ROW),
        Ok(true)
    );
    assert_eq!(eval("KUNNR NOT BETWEEN 1 AND 2", &ROW), Ok(true));
    assert_eq!(eval("LAND1 IN ('FR', 'DE')", &ROW), Ok(true));
    assert_eq!(eval("LAND1 IN ( 'FR','DE' )", &ROW), Ok(true));
    assert_eq!(eval("LAND1 NOT IN ('FR')", &ROW), Ok(true));
    assert_eq!(
        eval("KUNNR GE '0000001000' AND KUNNR LT '0000001001'", &ROW),
        Ok(true)
    );
    assert_eq!(eval("KUNNR = '1000'", &ROW), Ok(false));
    assert_eq!(eval("STCEG IS NULL", &ROW), Ok(false));
    assert_eq!(eval("STCEG IS NOT NULL", &ROW), Ok(true));
    assert_eq!(eval("/bic/zf = ''", &ROW), Ok(true));
    assert_eq!(eval("", &ROW), Ok(true));
    assert_eq!(eval("   ", &ROW), Ok(true));
}

#[test]
fn rows_join_as_sap_reads_them() {
    let cond = parse_rows(
        &["LAND1 EQ 'DE' AND", "( NAME1 LIKE 'O%'", "OR ORT01 = 'x' )"],
        &known,
    )
    .expect("three rows");
    let get = |f: &str| ROW.iter().find(|(k, _)| *k == f).map_or("", |(_, v)| *v);
    assert!(cond.eval(&get));
    // A full 72-column row followed by a row starting with a blank.
    let full = format!("{:<71}D", "LAND1 EQ 'DE' AND");
    assert_eq!(full.len(), 72);
    assert!(parse_rows(&[full.as_str(), " = 'x'"], &|f: &str| f == "D" || known(f)).is_ok());
}

#[test]
fn errors_name_the_row_the_column_and_the_reason() {
    let e = parse_rows(
        &["LAND1 = 'DE' AND", "KUNNR IN ( SELECT KUNNR FROM KNVV )"],
        &known,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "row 2, column 12: SELECT: subqueries are not allowed; the clause may only compare fields of the table read with literals"
    );
    let e = parse_rows(&["BOGUS = 'X'"], &known).unwrap_err();
    assert_eq!(e.reason(), "unknown field BOGUS");
    let e = parse_rows(&["LAND1 = 'DE' OR"], &known).unwrap_err();
    assert!(e.to_string().contains("ends where"), "{e}");
    let e = parse_rows(&["LAND1='DE'"], &known).unwrap_err();
    assert!(e.to_string().contains("separated"), "{e}");
}

#[test]
fn outside_the_grammar() {
    for bad in [
        "LAND1 = 'DE",
        "LAND1 'DE'",
        "( LAND1 = 'DE'",
        "LAND1 = 'DE' )",
        "(LAND1 = 'DE' )",
        "( LAND1 = 'DE')",
        "LAND1 = 'DE' LAND1",
        "LAND1 = 'DE' ; DROP",
        "LAND1 = LAND1",
        "LAND1 = NAME1",
        "LAND1 IN LAND1",
        "LAND1 IN('DE')",
        "LAND1 IN ()",
        "LAND1 IN ('DE' 'FR')",
        "LAND1 IN ('DE',)",
        "LAND1 NOT = 'DE'",
        "LAND1 IS NULL NULL",
        "LAND1 IS 'DE'",
        "NAME1 LIKE 'x' ESCAPE 'ab'",
        "NAME1 LIKE NAME1",
        "LAND1 BETWEEN 'A'",
        "KUNNR = 1-2",
        "KUNNR = 1E5",
        "KUNNR = - 5",
        "1 = 1",
        "'DE' = LAND1",
        "AND",
        "NOT",
        "( )",
    ] {
        assert!(parse_rows(&[bad], &known).is_err(), "{bad}");
    }
    assert!(parse_rows(&["KUNNR = -5"], &known).is_ok());
}

/// `text`'s blank-separated tokens packed into rows of at most 71 characters.
fn pack(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = vec![String::new()];
    for token in text.split_whitespace() {
        let row = rows.last_mut().expect("a row");
        if !row.is_empty() && row.len() + 1 + token.len() > ROW_WIDTH - 1 {
            rows.push(token.to_owned());
        } else {
            if !row.is_empty() {
                row.push(' ');
            }
            row.push_str(token);
        }
    }
    rows
}

#[test]
fn nesting_is_bounded_not_a_stack_overflow() {
    let nested = |depth: usize| format!("{}LAND1 = 'DE'{}", "( ".repeat(depth), " )".repeat(depth));
    assert!(parse_rows(&pack(&nested(MAX_DEPTH)), &known).is_ok());
    let e = parse_rows(&pack(&nested(MAX_DEPTH + 1)), &known).unwrap_err();
    assert!(e.to_string().contains("deeper"), "{e}");
    let deep = pack(&nested(15_000));
    assert!(deep.len() <= MAX_ROWS, "{} rows", deep.len());
    assert!(parse_rows(&deep, &known).is_err());
    let nots = pack(&format!("{}LAND1 = 'DE'", "NOT ".repeat(14_000)));
    assert!(nots.len() <= MAX_ROWS, "{} rows", nots.len());
    let e = parse_rows(&nots, &known).unwrap_err();
    assert!(e.to_string().contains("deeper"), "{e}");
}

#[test]
fn field_names() {
    for good in [
        "KUNNR",
        "LAND1",
        "_X",
        "/BIC/ZFIELD",
        "A1234567890123456789012345678Z",
    ] {
        assert!(is_field_name(good), "{good}");
    }
    for bad in [
        "",
        "kunnr",
        "1ABC",
        "KNA1~KUNNR",
        "SY-UNAME",
        "@X",
        "(X)",
        "/BIC",
        "/BIC/",
        "//X",
        "/A/B/C",
        "A B",
        "A123456789012345678901234567890",
    ] {
        assert!(!is_field_name(bad), "{bad}");
    }
}
