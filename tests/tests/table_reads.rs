//! Table reads end to end (relay, real agent, simulator): a WHERE clause that
//! would reach another table through a subquery — through the table action or as a
//! raw `RFC_READ_TABLE` with the subquery cut across `OPTIONS` rows — answers 403
//! `not-allowed` from the agent, a repeated field list is refused by the relay (400)
//! and by the agent (403), and ordinary reads still work.

use std::time::Duration;

use anyhow::Result;
use sapbridge_tests::{API_KEY, Client, Reply, TestAgent, TestRelay, simulator};
use serde_json::{Value, json};

const SUBQUERY: &str = "KUNNR IN ( SELECT PERNR FROM PA0008 WHERE BETRG > '5000' )";

struct Stack {
    relay: TestRelay,
    agent: TestAgent,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn stack() -> Result<Stack> {
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, &["*"], 8)?;
    let client = Client::new(&relay, Some(API_KEY));
    client.wait_agents("SIM", 1).await?;
    Ok(Stack {
        relay,
        agent,
        client,
        _dir: dir,
    })
}

/// `GET …/tables/KNA1` with `fields` and `where` as query parameters.
fn table_get(fields: &str, clause: &str) -> String {
    let mut url = reqwest::Url::parse("http://relay/v1/systems/SIM/tables/KNA1").expect("url");
    url.query_pairs_mut()
        .append_pair("fields", fields)
        .append_pair("where", clause);
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

fn assert_not_allowed(reply: &Reply, needle: &str) {
    assert_eq!(reply.status, 403, "{}", reply.body);
    let kind = reply.body["type"].as_str().unwrap_or_default();
    assert!(kind.ends_with("not-allowed"), "{}", reply.body);
    assert!(
        reply.body.to_string().contains(needle),
        "{needle}: {}",
        reply.body
    );
}

fn rows(reply: &Reply) -> Vec<Value> {
    reply.body["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_subquery_where_clause_is_403_and_a_normal_one_works() -> Result<()> {
    let s = stack().await?;
    let hostile = s.client.get(&table_get("KUNNR", SUBQUERY)).await?;
    assert_not_allowed(&hostile, "subqueries are not allowed");
    for clause in [
        "EXISTS ( SELECT * FROM PA0008 WHERE PERNR = '00000001' )",
        "kunnr = ( select max( pernr ) from pa0008 )",
        "PA0008~PERNR = '00000001'",
        "LAND1 = 'DE' \" AND KUNNR IN ( SELECT PERNR FROM PA0008 )",
    ] {
        let reply = s
            .client
            .post(
                "/v1/systems/SIM/tables/KNA1/query",
                &json!({"fields": ["KUNNR"], "where": clause}),
                &[],
            )
            .await?;
        assert_not_allowed(&reply, "where clause");
    }

    let normal = s
        .client
        .get(&table_get("KUNNR,LAND1", "LAND1 EQ 'DE'"))
        .await?;
    assert_eq!(normal.status, 200, "{}", normal.body);
    assert!(rows(&normal).len() >= 2, "{}", normal.body);
    assert!(rows(&normal).iter().all(|r| r["LAND1"] == "DE"));
    // SELECT inside a literal is data, and a clause over several rows still reads.
    let literal = s
        .client
        .get(&table_get(
            "KUNNR",
            &format!(
                "NAME1 = '{}' OR LAND1 EQ 'CH'",
                SUBQUERY.replace('\'', "''")
            ),
        ))
        .await?;
    assert_eq!(literal.status, 200, "{}", literal.body);
    assert_eq!(rows(&literal).len(), 1, "{}", literal.body);
    let long = s
        .client
        .post(
            "/v1/systems/SIM/tables/KNA1/query",
            &json!({"fields": ["KUNNR", "ORT01"], "where": "LAND1 EQ 'DE' AND ( ORT01 EQ \
                'Walldorf' OR ORT01 EQ 'Stuttgart' OR ORT01 EQ 'Bad Homburg vor der Hoehe' \
                OR NAME1 LIKE 'O''Brien%' )"}),
            &[],
        )
        .await?;
    assert_eq!(long.status, 200, "{}", long.body);
    assert_eq!(rows(&long).len(), 2, "{}", long.body);
    s.agent.stop().await?;
    s.relay.stop().await
}

#[tokio::test]
async fn raw_reads_with_a_subquery_across_rows_or_repeated_fields_are_403() -> Result<()> {
    let s = stack().await?;
    let read = |options: Vec<String>, fields: Vec<&str>| {
        let options: Vec<Value> = options.iter().map(|t| json!({ "TEXT": t })).collect();
        let fields: Vec<Value> = fields.iter().map(|f| json!({ "FIELDNAME": f })).collect();
        json!({"QUERY_TABLE": "KNA1", "DELIMITER": "|", "FIELDS": fields, "OPTIONS": options})
    };
    // The subquery cut at every offset between a row filling all 72 columns (SAP
    // reads it straight into the next) and the rest.
    for cut in 1..SUBQUERY.len() {
        let (head, tail) = SUBQUERY.split_at(cut);
        let options = vec![format!("{head:>72}"), tail.to_owned()];
        let reply = s
            .client
            .call("SIM", "RFC_READ_TABLE", &read(options, vec!["KUNNR"]))
            .await?;
        assert_not_allowed(&reply, "where clause");
    }
    let repeated = s
        .client
        .call(
            "SIM",
            "RFC_READ_TABLE",
            &read(Vec::new(), vec!["MANDT"; 5000]),
        )
        .await?;
    assert_not_allowed(&repeated, "FIELDS");
    let relayed = s.client.get(&table_get("KUNNR,NAME1,KUNNR", "")).await?;
    assert_eq!(relayed.status, 400, "{}", relayed.body);
    assert!(
        relayed.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("KUNNR is named more than once"),
        "{}",
        relayed.body
    );
    let fine = s
        .client
        .call(
            "SIM",
            "RFC_READ_TABLE",
            &read(
                vec!["LAND1 EQ 'DE' AND".into(), "NAME1 LIKE '%GmbH'".into()],
                vec!["KUNNR"],
            ),
        )
        .await?;
    assert_eq!(fine.status, 200, "{}", fine.body);
    assert!(
        fine.body["result"]["DATA"]
            .as_array()
            .is_some_and(|rows| !rows.is_empty()),
        "{}",
        fine.body
    );
    s.agent.stop().await?;
    s.relay.stop().await
}
