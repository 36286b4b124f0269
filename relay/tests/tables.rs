//! Table reads against a simulator-backed agent: typed rows, field lists (no
//! repeats, a cap), where clauses (also longer than one `OPTIONS` row), paging, the
//! split of a field list too wide for one `RFC_READ_TABLE` line, ABAP exceptions
//! as problems — and a unit of work whose second call fails leaving nothing behind.

mod common;

use common::business::{SYSTEM, get, kna1_count, post, relay_with_sim};
use serde_json::{Value, json};

fn table(query: &str) -> String {
    format!("/v1/systems/{SYSTEM}/tables/KNA1{query}")
}

fn rows(body: &Value) -> &Vec<Value> {
    body["rows"].as_array().expect("rows")
}

#[tokio::test]
async fn fields_and_where_give_typed_rows() {
    let (relay, agent) = relay_with_sim().await;
    let answer = get(
        &relay,
        &table("?fields=KUNNR,NAME1,LAND1,ERDAT&where=LAND1%20EQ%20%27DE%27"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let fields = answer.body["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["KUNNR", "NAME1", "LAND1", "ERDAT"]);
    assert_eq!(fields[3]["type"], "D");
    assert_eq!(fields[1]["length"], 35);
    assert_eq!(fields[1]["description"], "Name 1");
    let rows = rows(&answer.body);
    assert!(rows.len() >= 2);
    for row in rows {
        assert_eq!(row["LAND1"], "DE");
        assert_eq!(row.as_object().unwrap().len(), 4);
        let erdat = row["ERDAT"].as_str().unwrap();
        assert!(erdat.len() == 10 && &erdat[4..5] == "-", "{erdat}");
        assert!(!row["NAME1"].as_str().unwrap().ends_with(' '));
    }
    assert!(rows.iter().any(|r| r["KUNNR"] == "0000001000"));
    assert_eq!(answer.body["more"], false);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn limit_and_offset_page_through_rows() {
    let (relay, agent) = relay_with_sim().await;
    let first = get(&relay, &table("?fields=KUNNR&limit=2")).await;
    let second = get(&relay, &table("?fields=KUNNR&limit=2&offset=2")).await;
    let all = get(&relay, &table("?fields=KUNNR")).await;
    let ids = |a: &Value| -> Vec<String> {
        rows(a)
            .iter()
            .map(|r| r["KUNNR"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first.body).len(), 2);
    assert_eq!(first.body["more"], true);
    let mut paged = ids(&first.body);
    paged.extend(ids(&second.body));
    assert_eq!(paged, ids(&all.body)[..4].to_vec());
    let last = get(
        &relay,
        &table(&format!(
            "?fields=KUNNR&offset={}",
            ids(&all.body).len() - 1
        )),
    )
    .await;
    assert_eq!(rows(&last.body).len(), 1);
    assert_eq!(last.body["more"], false);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn where_clauses_longer_than_one_line_are_split_between_tokens() {
    let (relay, agent) = relay_with_sim().await;
    let clause = "LAND1 EQ 'DE' AND ( ORT01 EQ 'Walldorf' OR ORT01 EQ 'Stuttgart' OR \
                  ORT01 EQ 'Bad Homburg vor der Hoehe' OR NAME1 LIKE 'O''Brien%' )";
    assert!(clause.len() > 72);
    let answer = post(
        &relay,
        &table("/query"),
        json!({"fields": ["KUNNR", "ORT01"], "where": clause}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut cities: Vec<&str> = rows(&answer.body)
        .iter()
        .map(|r| r["ORT01"].as_str().unwrap())
        .collect();
    cities.sort();
    assert_eq!(cities, ["Stuttgart", "Walldorf"]);
    let unclosed = post(&relay, &table("/query"), json!({"where": "LAND1 EQ 'DE"})).await;
    assert_eq!(unclosed.status, 400);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn repeated_or_too_many_fields_are_400_naming_the_problem() {
    let (relay, agent) = relay_with_sim().await;
    let problem = |answer: &common::business::Answer, needle: &str| {
        assert_eq!(answer.status, 400, "{}", answer.body);
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{needle}: {}", answer.body);
    };
    let twice = get(&relay, &table("?fields=KUNNR,NAME1,kunnr")).await;
    problem(&twice, "KUNNR is named more than once");
    let repeats = vec!["KUNNR"; 5000].join(",");
    let flood = get(&relay, &table(&format!("?fields={repeats}"))).await;
    problem(&flood, "5000 fields named");
    let body = post(
        &relay,
        &table("/query"),
        json!({"fields": ["LAND1", "ORT01", "LAND1"]}),
    )
    .await;
    problem(&body, "LAND1 is named more than once");
    let max = sapbridge_sap::table_read::MAX_FIELDS;
    let many: Vec<String> = (0..=max).map(|i| format!("F{i}")).collect();
    let wide = post(&relay, &table("/query"), json!({ "fields": many })).await;
    problem(&wide, &format!("{} fields named; at most {max}", max + 1));
    // Distinct fields still read.
    let fine = get(&relay, &table("?fields=KUNNR,NAME1&limit=1")).await;
    assert_eq!(fine.status, 200, "{}", fine.body);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn too_wide_reads_are_split_and_stitched() {
    let (relay, agent) = relay_with_sim().await;
    // No field list: all of KNA1 is wider than the 512-character line.
    let answer = get(&relay, &table("?where=LAND1%20EQ%20%27DE%27")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let fields = answer.body["fields"].as_array().unwrap();
    assert!(fields.len() > 40, "{} fields", fields.len());
    assert_eq!(fields[0]["name"], "MANDT");
    let width: u64 = fields.iter().map(|f| f["length"].as_u64().unwrap()).sum();
    assert!(width > 512);
    for row in rows(&answer.body) {
        assert_eq!(row.as_object().unwrap().len(), fields.len());
        assert_eq!(row["LAND1"], "DE");
    }
    let reference = rows(&answer.body)
        .iter()
        .find(|r| r["KUNNR"] == "0000001000")
        .unwrap();
    assert_eq!(reference["NAME1"], "Referenzkunde Inland");
    assert_eq!(reference["STCEG"], "");
    assert_eq!(reference["ERDAT"], "2024-01-02");
    // A wide explicit list, in the order asked, without the repeated keys.
    let many = [
        "NAME1", "NAME2", "NAME3", "NAME4", "ORT01", "ORT02", "STRAS", "MCOD1", "MCOD2", "MCOD3",
        "BAHNE", "BAHNS", "TELTX", "TELX1", "TELFX", "STCEG", "LAND1",
    ];
    let answer = post(
        &relay,
        &table("/query"),
        json!({"fields": many, "limit": 3}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let names: Vec<&str> = answer.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, many);
    assert_eq!(rows(&answer.body).len(), 3);
    assert!(rows(&answer.body).iter().all(|r| r.get("KUNNR").is_none()));
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn abap_exceptions_are_problems() {
    let (relay, agent) = relay_with_sim().await;
    let missing = get(&relay, &format!("/v1/systems/{SYSTEM}/tables/T000")).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.body["rfc_error"]["key"], "TABLE_NOT_AVAILABLE");
    let field = get(&relay, &table("?fields=KUNNR,NOPE")).await;
    assert_eq!(field.status, 400, "{}", field.body);
    assert_eq!(field.body["rfc_error"]["key"], "FIELD_NOT_VALID");
    let clause = get(&relay, &table("?where=LAND1%20IS%20GREEN")).await;
    assert_eq!(clause.status, 400, "{}", clause.body);
    assert_eq!(clause.body["rfc_error"]["key"], "OPTION_NOT_VALID");
    let bad = get(&relay, &table("?limit=0")).await;
    assert_eq!(bad.status, 400);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_transaction_whose_second_call_fails_leaves_no_customer() {
    let (relay, agent) = relay_with_sim().await;
    let create = json!({"function": "BAPI_CUSTOMER_CREATEFROMDATA1", "parameters": {
        "PI_COMPANYDATA": {"NAME": "Roll Back AG", "CITY": "Berlin", "POSTL_COD1": "10115",
            "COUNTRY": "DE", "LANGU": "E", "CURRENCY": "EUR"},
        "PI_COPYREFERENCE": {"SALESORG": "1000", "DISTR_CHAN": "10", "DIVISION": "00",
            "REF_CUSTMR": "0000001000"}}});
    let before = kna1_count(&relay).await;
    let failing = post(
        &relay,
        &format!("/v1/systems/{SYSTEM}/transactions"),
        json!({"commit": true, "calls": [create, {"function": "BAPI_CUSTOMER_GETDETAIL2",
            "parameters": {"CUSTOMERNO": "0000000000"}}]}),
    )
    .await;
    assert_eq!(failing.status, 422, "{}", failing.body);
    assert_eq!(failing.body["committed"], false);
    assert_eq!(kna1_count(&relay).await, before);
    let alone = post(
        &relay,
        &format!("/v1/systems/{SYSTEM}/transactions"),
        json!({"commit": true, "calls": [create]}),
    )
    .await;
    assert_eq!(alone.status, 200, "{}", alone.body);
    assert_eq!(kna1_count(&relay).await, before + 1);
    agent.stop().await;
    relay.stop().await;
}
