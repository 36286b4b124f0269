//! Table reads a hostile relay could send, through the executor in front of the
//! real simulator: WHERE clauses that reach other tables (subqueries in every
//! position, `table~column`, host variables, dynamic tokens, comments, row
//! boundaries at every offset, case and blank variants) must be refused with
//! `NOT_ALLOWED` before SAP is touched; the clauses people write — `SELECT` inside
//! a literal included — must still reach SAP and work; and so for `FIELDS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sapbridge_proto::FunctionCall;
use sapbridge_sap::SapSystem;
use sapbridge_sap::sim::{SimOptions, Simulator};
use serde_json::json;

use super::*;
use crate::allowlist::Allowlist;

/// The simulator, counting the sessions opened on it.
struct Counting {
    sim: Simulator,
    connects: Arc<AtomicUsize>,
}

#[async_trait]
impl SapSystem for Counting {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        self.sim.connect().await
    }
}

struct Harness {
    system: ServedSystem,
    connects: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).expect("sim");
    let connects = Arc::new(AtomicUsize::new(0));
    let system = ServedSystem {
        agent_id: "agent-1".into(),
        name: "SIM".into(),
        allowlist: Allowlist::parse(&["*"]).expect("allowlist"),
        tables: Allowlist::parse(&["KNA1"]).expect("tables"),
        sap: Arc::new(Counting {
            sim,
            connects: connects.clone(),
        }),
    };
    Harness {
        system,
        connects,
        _dir: dir,
    }
}

fn read_unit(parameters: Value) -> Unit {
    let mut unit = crate::test_units::unit(&[], CommitPolicy::None);
    unit.calls.push(FunctionCall {
        function: "RFC_READ_TABLE".into(),
        parameters: parameters.as_object().expect("an object").clone(),
    });
    unit
}

fn with_options(rows: &[String]) -> Value {
    let options: Vec<Value> = rows.iter().map(|r| json!({ "TEXT": r })).collect();
    json!({"QUERY_TABLE": "KNA1", "DELIMITER": "|", "FIELDS": [{"FIELDNAME": "KUNNR"}],
        "OPTIONS": options})
}

impl Harness {
    /// Runs the read; `Err(message)` when the agent refused it with `NOT_ALLOWED`
    /// and SAP was not touched, `Ok(outcome)` when it went to SAP.
    async fn run(&self, parameters: Value) -> Result<Outcome, String> {
        let before = self.connects.load(Ordering::SeqCst);
        let outcome = execute(&read_unit(parameters), Some(&self.system), None, &()).await;
        let touched = self.connects.load(Ordering::SeqCst) != before;
        match outcome {
            Outcome::Failed { error } if error.key == "NOT_ALLOWED" => {
                assert_eq!(error.group, ErrorGroup::NotAllowed);
                assert!(!touched, "refused, yet SAP was called: {}", error.message);
                Err(error.message)
            }
            other => {
                assert!(touched, "{other:?}");
                Ok(other)
            }
        }
    }

    async fn refused(&self, what: &str, parameters: Value) -> String {
        match self.run(parameters).await {
            Err(message) => message,
            Ok(outcome) => panic!("{what}: passed to SAP: {outcome:?}"),
        }
    }

    /// The read went to SAP and SAP answered it (rows, not an ABAP exception).
    async fn answered(&self, what: &str, parameters: Value) -> usize {
        match self.run(parameters).await {
            Ok(Outcome::Completed { results, .. }) => match results.as_slice() {
                [CallResult::Ok(out)] => out["DATA"].as_array().map_or(0, Vec::len),
                other => panic!("{what}: SAP refused it: {other:?}"),
            },
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// Pads `text` with blanks on the left to fill a whole 72-column row.
fn right_aligned(text: &str) -> String {
    format!("{text:>72}")
}

const SUBQUERY: &str = "KUNNR IN ( SELECT PERNR FROM PA0008 WHERE BETRG > '5000' )";

const HOSTILE: &[&str] = &[
    // Subqueries in every position.
    SUBQUERY,
    "KUNNR IN (SELECT PERNR FROM PA0008)",
    "KUNNR NOT IN ( SELECT PERNR FROM PA0008 )",
    "EXISTS ( SELECT * FROM PA0008 WHERE PERNR = '00000001' )",
    "NOT EXISTS ( SELECT * FROM PA0008 )",
    "LAND1 = 'DE' AND EXISTS ( SELECT PERNR FROM PA0008 )",
    "LAND1 = 'DE' OR ( EXISTS ( SELECT PERNR FROM PA0008 ) )",
    "KUNNR = ( SELECT MAX( PERNR ) FROM PA0008 )",
    "KUNNR > ALL ( SELECT PERNR FROM PA0008 )",
    "KUNNR = ANY ( SELECT PERNR FROM PA0008 )",
    "KUNNR = SOME ( SELECT PERNR FROM PA0008 )",
    "KUNNR BETWEEN ( SELECT MIN( PERNR ) FROM PA0008 ) AND '9'",
    "NAME1 LIKE ( SELECT ENAME FROM PA0001 )",
    "( KUNNR, LAND1 ) IN ( SELECT PERNR, MOLGA FROM PA0008 )",
    "LAND1 = 'DE' UNION SELECT PERNR FROM PA0008",
    // Columns of other tables, host variables, dynamic tokens.
    "PA0008~PERNR = '00000001'",
    "KNA1~KUNNR = PA0008~PERNR",
    "KUNNR = PA0008~PERNR",
    "KUNNR = @LV_KUNNR",
    "KUNNR = @( 'X' )",
    "KUNNR = SY-UNAME",
    "KUNNR = QUERY_TABLE",
    "KUNNR IN @RANGE",
    "KUNNR IN OPTIONS",
    "KUNNR IN (OPTIONS)",
    "KUNNR = :PARAM",
    "(OPTIONS)",
    "LAND1 = 'DE' AND (OPTIONS)",
    "( OPTIONS )",
    // Case and blank variants.
    "kunnr in ( select pernr from pa0008 )",
    "KuNnR In ( SeLeCt PeRnR FrOm Pa0008 )",
    "exists ( select * from pa0008 )",
    "KUNNR    IN    (    SELECT    PERNR    FROM    PA0008    )",
    "KUNNR\tIN\t(\tSELECT PERNR FROM PA0008 )",
    "KUNNR IN (\nSELECT PERNR FROM PA0008 )",
    "KUNNR IN (\r\nSELECT PERNR FROM PA0008 )",
    "KUNNR\u{a0}IN ( SELECT PERNR FROM PA0008 )",
    "LAND1\t=\t'DE'",
    // Expressions, functions, second statements.
    "UPPER( NAME1 ) = 'X'",
    "KUNNR + 1 = 2",
    "CAST( KUNNR AS INT4 ) = 1",
    "NAME1 = 'A' && 'B'",
    "LAND1 = 'DE'. SELECT * FROM PA0008.",
    "LAND1 = 'DE' ; DELETE FROM KNA1",
    "LAND1 = 'DE' ORDER BY KUNNR",
    "LAND1 = 'DE' GROUP BY LAND1",
    "NAME1 = `x`",
    // Comments.
    "LAND1 = 'DE' \" AND KUNNR IN ( SELECT PERNR FROM PA0008 )",
    "* KUNNR IN ( SELECT PERNR FROM PA0008 )",
    // Unbalanced parentheses and quotes, glued tokens.
    "( LAND1 = 'DE'",
    "LAND1 = 'DE' )",
    "( ( LAND1 = 'DE' )",
    "LAND1 = 'DE",
    "LAND1 = 'DE''",
    "LAND1 = DE'",
    "LAND1='DE'",
    "(LAND1 = 'DE' )",
];

#[tokio::test]
async fn hostile_where_clauses_are_refused_before_sap() {
    let h = harness();
    for clause in HOSTILE {
        let message = h
            .refused(clause, with_options(&[(*clause).to_owned()]))
            .await;
        assert!(
            message.contains("RFC_READ_TABLE") && message.contains("where clause"),
            "{clause}: {message}"
        );
    }
    let subquery = h
        .refused("subquery", with_options(&[SUBQUERY.to_owned()]))
        .await;
    assert!(
        subquery.contains("subqueries are not allowed"),
        "{subquery}"
    );
}

#[tokio::test]
async fn hostile_rows_are_refused_however_the_rows_are_cut() {
    let h = harness();
    // The subquery split between two rows at every offset, the first row short or
    // filling all 72 columns (so that SAP reads it straight into the second).
    for cut in 1..SUBQUERY.len() {
        let (head, tail) = SUBQUERY.split_at(cut);
        for rows in [
            vec![head.to_owned(), tail.to_owned()],
            vec![right_aligned(head), tail.to_owned()],
            vec![head.to_owned(), format!(" {tail}")],
            vec![
                right_aligned("LAND1 = 'DE' OR"),
                head.to_owned(),
                tail.to_owned(),
            ],
        ] {
            h.refused(&format!("{rows:?}"), with_options(&rows)).await;
        }
    }
    for rows in [
        // A literal running from one row into the next.
        vec!["NAME1 = 'abc".to_owned(), "def'".to_owned()],
        // A comment row, a comment tail.
        vec!["LAND1 = 'DE'".to_owned(), "* comment".to_owned()],
        vec!["LAND1 = 'DE' \" comment".to_owned()],
        // Hiding code in a literal that SAP would read otherwise: a comment inside
        // a literal continued from the row before.
        vec![
            "NAME1 = 'x".to_owned(),
            format!("\"{:>70}", "'"),
            "' OR KUNNR IN ( SELECT PERNR FROM PA0008 ) OR NAME1 = 'y'".to_owned(),
        ],
        // A quote in column 72 and one in column 1 of the next row: '' to SAP.
        vec![
            right_aligned("NAME1 = 'a'"),
            "' OR KUNNR IN ( SELECT PERNR FROM PA0008 ) OR NAME1 = 'b'".to_owned(),
        ],
        // A row wider than RFC_DB_OPT-TEXT: SAP would see it cut.
        vec![format!("{:<72}{}", "LAND1 = 'DE' OR NAME1 = 'x'", "x")],
        vec!["LAND1 = 'DE'".to_owned(); sapbridge_sap::where_clause::MAX_ROWS + 1],
    ] {
        h.refused(&format!("{rows:?}"), with_options(&rows)).await;
    }
}

#[tokio::test]
async fn the_clauses_people_write_still_reach_sap() {
    let h = harness();
    let one = |clause: &str| with_options(&[clause.to_owned()]);
    for clause in [
        "LAND1 EQ 'DE'",
        "land1 eq 'DE' and ( ort01 = 'Walldorf' or ort01 = 'Stuttgart' )",
        "NAME1 = 'KUNNR IN ( SELECT PERNR FROM PA0008 )'",
        "NAME1 LIKE '%SELECT%' OR NAME1 <> 'EXISTS ( SELECT * FROM PA0008 )'",
        "NAME1 = 'say \"hi\"' OR NAME1 = 'O''Brien ( SELECT'",
        "NAME1 = '* not a comment' OR NAME1 = 'a ~ b @c -d `e`'",
        "KUNNR IN ('0000001000','0000001001') OR KUNNR IN ( '0000001002' )",
        "KUNNR BETWEEN '0000001000' AND '0000001005' OR KUNNR NOT BETWEEN 1 AND 2",
        "NAME1 LIKE 'R%' ESCAPE '#' OR NAME1 NOT LIKE '%'",
        "STCEG IS NULL OR STCEG IS NOT NULL",
        "NOT LAND1 = 'US' AND LAND1 NOT IN ('US')",
        "LAND1   =   'DE'   AND   KUNNR   <>   '1'",
        "KUNNR <> 1000 AND KUNNR > -5",
    ] {
        h.answered(clause, one(clause)).await;
    }
    let rows = |rows: &[String]| with_options(rows);
    assert_eq!(
        h.answered("no clause", rows(&[])).await,
        h.answered("a blank row", rows(&[String::new()])).await
    );
    let split = [
        "LAND1 EQ 'DE' AND".to_owned(),
        "( NAME1 LIKE '%GmbH' OR ORT01 = 'Hamburg' )".to_owned(),
    ];
    assert!(h.answered("two rows", rows(&split)).await > 0);
    // A row filling all 72 columns, the next one starting with a blank.
    let full = [
        right_aligned("LAND1 EQ 'DE'"),
        " AND KUNNR <> '1'".to_owned(),
    ];
    assert!(h.answered("a full row", rows(&full)).await > 0);
}

#[tokio::test]
async fn field_lists_are_checked() {
    let h = harness();
    let read = |fields: Vec<Value>| json!({"QUERY_TABLE": "KNA1", "FIELDS": fields});
    let named = |names: &[&str]| -> Vec<Value> {
        names.iter().map(|n| json!({ "FIELDNAME": n })).collect()
    };
    h.answered("three fields", read(named(&["KUNNR", "LAND1", "ORT01"])))
        .await;
    for (what, fields) in [
        ("a repeat", named(&["KUNNR", "LAND1", "KUNNR"])),
        ("a repeat in other case", named(&["KUNNR", " kunnr "])),
        ("5,000 repeats", named(&["KUNNR"; 5000])),
        (
            "SQL in a name",
            named(&["KUNNR, ( SELECT PERNR FROM PA0008 )"]),
        ),
        ("not a name", vec![json!({"FIELDNAME": 7})]),
    ] {
        let message = h.refused(what, read(fields)).await;
        assert!(message.contains("FIELDS"), "{what}: {message}");
    }
    let many: Vec<Value> = (0..=sapbridge_sap::table_read::MAX_FIELDS)
        .map(|i| json!({ "FIELDNAME": format!("F{i}") }))
        .collect();
    let message = h.refused("too many fields", read(many)).await;
    assert!(message.contains("1501 fields"), "{message}");
    // Parameter names spelt otherwise than SAP spells them.
    for (what, parameters) in [
        (
            "options",
            json!({"QUERY_TABLE": "KNA1", "options": [{"TEXT": SUBQUERY}]}),
        ),
        (
            "fields",
            json!({"QUERY_TABLE": "KNA1", "fields": named(&["KUNNR", "KUNNR"])}),
        ),
        ("query_table", json!({"query_table": "PA0008"})),
    ] {
        h.refused(what, parameters).await;
    }
}
