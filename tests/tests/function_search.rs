//! Function pick lists end to end (relay, real agent, simulator):
//! `GET /v1/systems/SIM/functions?search=` lists only the function modules the
//! agent's allowlist lets through (the agent filters `RFC_FUNCTION_SEARCH`'s
//! answer), needs `RFC_FUNCTION_SEARCH` itself allowed (403 otherwise), and
//! refuses bad patterns and limits with problem+json before anything is queued.

use std::time::Duration;

use anyhow::Result;
use sapbridge_tests::{API_KEY, Client, TestAgent, TestRelay, agents_of, simulator};
use serde_json::{Value, json};

async fn with_agent<F, Fut>(allow: &[&str], test: F) -> Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let dir = tempfile::tempdir()?;
    let relay = TestRelay::start(json!({})).await?;
    let sim = simulator(dir.path(), Duration::ZERO)?;
    let agent = TestAgent::start(&relay, "agent-1", dir.path(), sim, allow, 4)?;
    let client = Client::new(&relay, Some(API_KEY));
    let systems = client.wait_agents("SIM", 1).await?;
    assert_eq!(agents_of(&systems, "SIM")[0]["function_search"], true);
    test(client).await?;
    agent.stop().await?;
    relay.stop().await
}

fn names(body: &Value) -> Vec<&str> {
    body["functions"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["function"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_list_holds_only_what_the_allowlist_lets_through() -> Result<()> {
    let allow = ["RFC_FUNCTION_SEARCH", "BAPI_CUSTOMER_*", "STFC_CONNECTION"];
    with_agent(&allow, |client| async move {
        let all = client.get("/v1/systems/SIM/functions").await?;
        assert_eq!(all.status, 200, "{}", all.body);
        assert_eq!(
            names(&all.body),
            [
                "BAPI_CUSTOMER_CHANGEFROMDATA1",
                "BAPI_CUSTOMER_CREATEFROMDATA1",
                "BAPI_CUSTOMER_GETDETAIL2",
                "BAPI_CUSTOMER_GETLIST",
                "RFC_FUNCTION_SEARCH",
                "STFC_CONNECTION",
            ],
            "RFC_READ_TABLE and the others are not allowed: {}",
            all.body
        );
        assert_eq!(all.body["search"], "*");
        assert_eq!(all.body["truncated"], false);
        let first = &all.body["functions"][0];
        assert_eq!(first["group"], "V02D");
        assert!(first["description"].as_str().is_some_and(|d| !d.is_empty()));

        // Text without * is searched anywhere in the name; a limit cuts the list.
        let some = client
            .get("/v1/systems/SIM/functions?search=getdetail")
            .await?;
        assert_eq!(names(&some.body), ["BAPI_CUSTOMER_GETDETAIL2"]);
        assert_eq!(some.body["search"], "*GETDETAIL*");
        let cut = client
            .get("/v1/systems/SIM/functions?search=BAPI_*&limit=2")
            .await?;
        assert_eq!(names(&cut.body).len(), 2, "{}", cut.body);
        assert_eq!(cut.body["truncated"], true);
        // Nothing found (SAP's NO_FUNCTION_FOUND, or all filtered) is an empty list.
        for search in ["Z_NOTHING_*", "RFC_READ_*"] {
            let none = client
                .get(&format!("/v1/systems/SIM/functions?search={search}"))
                .await?;
            assert_eq!(none.status, 200, "{}", none.body);
            assert_eq!(none.body["functions"], json!([]), "{search}");
        }

        for bad in [
            "search=RFC%25",
            "search=A'B",
            "search=ABCDEFGHIJKLMNOPQRSTUVWXYZ_ABCD",
            "limit=0",
            "limit=1001",
            "limit=ten",
            "sort=name",
        ] {
            let reply = client
                .get(&format!("/v1/systems/SIM/functions?{bad}"))
                .await?;
            assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
            assert_eq!(
                reply.header("content-type").as_deref(),
                Some("application/problem+json"),
                "{bad}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_search_itself_must_be_allowed_by_the_agent() -> Result<()> {
    with_agent(&["BAPI_CUSTOMER_*"], |client| async move {
        let reply = client.get("/v1/systems/SIM/functions").await?;
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert!(
            reply.body.to_string().contains("RFC_FUNCTION_SEARCH"),
            "{}",
            reply.body
        );
        Ok(())
    })
    .await
}
