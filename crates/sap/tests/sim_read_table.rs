//! RFC_READ_TABLE on KNA1: field layout, delimiter, WHERE, paging, exceptions.

use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::{ErrorGroup, Parameters, RfcError, SapConnection, SapSystem};
use serde_json::{Value, json};

fn params(v: Value) -> Parameters {
    v.as_object().cloned().unwrap_or_default()
}

async fn conn() -> (tempfile::TempDir, Box<dyn SapConnection>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Simulator::open(&dir.path().join("sim.db"), SimOptions::default()).expect("open");
    let conn = sim.connect().await.expect("connect");
    (dir, conn)
}

async fn read(c: &mut Box<dyn SapConnection>, p: Value) -> Result<Parameters, RfcError> {
    c.call("RFC_READ_TABLE", &params(p)).await
}

fn fields(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({ "FIELDNAME": n })).collect())
}

fn rows(out: &Parameters) -> Vec<String> {
    out["DATA"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["WA"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn layout_with_and_without_delimiter() {
    let (_dir, mut c) = conn().await;
    let out = read(&mut c, json!({
        "QUERY_TABLE": "KNA1", "DELIMITER": "|", "FIELDS": fields(&["KUNNR", "LAND1", "NAME1", "ERDAT"]),
        "OPTIONS": [{ "TEXT": "KUNNR = '0000001001'" }]
    }))
    .await
    .expect("read");
    let f = &out["FIELDS"];
    assert_eq!(
        f[0],
        json!({ "FIELDNAME": "KUNNR", "OFFSET": "000000", "LENGTH": "000010", "TYPE": "C", "FIELDTEXT": "Customer Number" })
    );
    assert_eq!(
        (
            f[1]["OFFSET"].as_str(),
            f[2]["OFFSET"].as_str(),
            f[3]["OFFSET"].as_str()
        ),
        (Some("000011"), Some("000015"), Some("000051"))
    );
    assert_eq!(f[3]["TYPE"], "D");
    let expected = format!("0000001001|DE |{:<35}|20240102", "Becker Maschinenbau GmbH");
    assert_eq!(rows(&out), [expected]);

    let out = read(
        &mut c,
        json!({
            "QUERY_TABLE": "KNA1", "FIELDS": fields(&["LAND1", "KUNNR"]),
            "OPTIONS": [{ "TEXT": "KUNNR = '0000001004'" }]
        }),
    )
    .await
    .expect("read");
    assert_eq!(out["FIELDS"][1]["OFFSET"], "000003");
    assert_eq!(rows(&out), ["US 0000001004"]);
}

#[tokio::test]
async fn where_clause_over_several_lines_and_paging() {
    let (_dir, mut c) = conn().await;
    let base = json!({
        "QUERY_TABLE": "KNA1", "DELIMITER": ";", "FIELDS": fields(&["KUNNR"]),
        "OPTIONS": [{ "TEXT": "LAND1 EQ 'DE' AND" }, { "TEXT": "( NAME1 LIKE '%GmbH' OR ORT01 = 'Hamburg' )" }]
    });
    let out = read(&mut c, base.clone()).await.expect("read");
    assert_eq!(rows(&out), ["0000001001", "0000001002"]);

    let mut paged = base.clone();
    paged["ROWSKIPS"] = json!(1);
    paged["ROWCOUNT"] = json!(1);
    assert_eq!(
        rows(&read(&mut c, paged).await.expect("read")),
        ["0000001002"]
    );

    let all = json!({ "QUERY_TABLE": "KNA1", "FIELDS": fields(&["KUNNR"]), "ROWCOUNT": 3, "ROWSKIPS": 6 });
    assert_eq!(
        rows(&read(&mut c, all).await.expect("read")),
        ["0000001006", "0000001007"]
    );

    let q = |text: &str| json!({ "QUERY_TABLE": "KNA1", "FIELDS": fields(&["KUNNR"]), "OPTIONS": [{ "TEXT": text }] });
    assert_eq!(
        rows(
            &read(&mut c, q("NAME1 = 'Müller & Söhne KG'"))
                .await
                .expect("read")
        ),
        ["0000001003"]
    );
    assert_eq!(
        rows(
            &read(&mut c, q("LAND1 IN ('GB','FR') AND NOT LAND1 = 'FR'"))
                .await
                .expect("read")
        ),
        ["0000001005"]
    );
    assert_eq!(
        rows(
            &read(
                &mut c,
                q("land1 <> 'DE' AND land1 >= 'FR' AND LAND1 < 'US'")
            )
            .await
            .expect("read")
        ),
        ["0000001005", "0000001006"]
    );
    assert_eq!(
        rows(&read(&mut c, q("KUNNR = '1000'")).await.expect("read")).len(),
        0,
        "no ALPHA conversion in WHERE"
    );
    assert_eq!(
        rows(
            &read(&mut c, q("NAME1 LIKE 'Alpen Pr_zision AG'"))
                .await
                .expect("read")
        ),
        ["0000001007"]
    );

    let mut no_data = base;
    no_data["NO_DATA"] = json!("X");
    let out = read(&mut c, no_data).await.expect("read");
    assert_eq!(rows(&out).len(), 0);
    assert_eq!(out["FIELDS"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn uncommitted_changes_are_not_read() {
    let (_dir, mut c) = conn().await;
    let change = params(json!({
        "CUSTOMERNO": "1001", "PI_SALESORG": "1000",
        "PI_COMPANYDATA": { "CITY": "Ulm" }, "PI_COMPANYDATAX": { "CITY": "X" }
    }));
    c.call("BAPI_CUSTOMER_CHANGEFROMDATA1", &change)
        .await
        .expect("change");
    let q = json!({ "QUERY_TABLE": "KNA1", "FIELDS": fields(&["ORT01"]), "OPTIONS": [{ "TEXT": "KUNNR = '0000001001'" }] });
    assert_eq!(
        rows(&read(&mut c, q.clone()).await.expect("read")),
        ["Stuttgart"]
    );
    c.call("BAPI_TRANSACTION_COMMIT", &Parameters::new())
        .await
        .expect("commit");
    assert_eq!(rows(&read(&mut c, q).await.expect("read")), ["Ulm"]);
}

#[tokio::test]
async fn exceptions() {
    let (_dir, mut c) = conn().await;
    let key = |r: Result<Parameters, RfcError>| r.err().map(|e| (e.group, e.key));
    let app = |k: &str| Some((ErrorGroup::AbapApplicationFailure, k.to_owned()));

    let err = read(&mut c, json!({ "QUERY_TABLE": "T008X" }))
        .await
        .expect_err("error");
    assert_eq!(
        (
            err.key.as_str(),
            err.msg_class.as_str(),
            err.msg_number.as_str(),
            err.msg_v1.as_str()
        ),
        ("TABLE_NOT_AVAILABLE", "SV", "029", "T008X")
    );
    assert_eq!(
        key(read(&mut c, json!({ "QUERY_TABLE": "kna1" })).await),
        app("TABLE_NOT_AVAILABLE")
    );
    assert_eq!(
        key(read(&mut c, json!({})).await),
        app("TABLE_NOT_AVAILABLE")
    );
    assert_eq!(
        key(read(
            &mut c,
            json!({ "QUERY_TABLE": "KNA1", "FIELDS": fields(&["NOPE"]) })
        )
        .await),
        app("FIELD_NOT_VALID")
    );
    assert_eq!(
        key(read(&mut c, json!({ "QUERY_TABLE": "KNA1" })).await),
        app("DATA_BUFFER_EXCEEDED"),
        "all KNA1 fields exceed 512"
    );
    for bad in [
        "LAND1 = 'DE",
        "NOPE = 'X'",
        "LAND1 'DE'",
        "( LAND1 = 'DE'",
        "LAND1 = 'DE' OR",
    ] {
        let q = json!({ "QUERY_TABLE": "KNA1", "FIELDS": fields(&["KUNNR"]), "OPTIONS": [{ "TEXT": bad }] });
        assert_eq!(key(read(&mut c, q).await), app("OPTION_NOT_VALID"), "{bad}");
    }
    let wide: Vec<&str> = [
        "NAME1", "NAME2", "NAME3", "NAME4", "ORT01", "ORT02", "STRAS", "MCOD1", "MCOD2", "MCOD3",
        "BAHNE", "BAHNS", "TELTX", "TELX1", "TELFX", "STCEG", "TELF1", "TELF2",
    ]
    .to_vec();
    assert_eq!(
        key(read(
            &mut c,
            json!({ "QUERY_TABLE": "KNA1", "DELIMITER": "|", "FIELDS": fields(&wide) })
        )
        .await),
        app("DATA_BUFFER_EXCEEDED")
    );
}
