//! The customer actions against a simulator-backed agent: create, read (with and
//! without leading zeros), change only the given fields, search, business errors
//! as 422 with SAP's message, unknown customers as 404, validation as 400, and the
//! 202 + `Location` polling of a create that no agent took in time.

mod common;

use common::TestRelay;
use common::business::{SYSTEM, get, kna1_count, patch, poll, post, relay_with_sim, send};
use common::sim_agent::SimAgent;
use reqwest::Method;
use serde_json::json;

fn customers() -> String {
    format!("/v1/systems/{SYSTEM}/customers")
}

#[tokio::test]
async fn create_then_read_back_with_and_without_zeros() {
    let (relay, agent) = relay_with_sim().await;
    let created = post(
        &relay,
        &customers(),
        json!({"name": "Conformance Test GmbH", "street": "Dietmar-Hopp-Allee 16",
               "postal_code": "69190", "city": "Walldorf", "country": "de"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let number = created.body["customer"].as_str().unwrap().to_owned();
    assert!(number.len() == 10 && number.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        created.header("location"),
        Some(format!("{}/{number}", customers()).as_str())
    );
    assert_eq!(created.body["country"], "DE");
    assert_eq!(created.body["language"], "EN");

    let read = get(&relay, &format!("{}/{number}", customers())).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["customer"], number);
    assert_eq!(read.body["name"], "Conformance Test GmbH");
    assert_eq!(read.body["street"], "Dietmar-Hopp-Allee 16");
    assert_eq!(read.body["city"], "Walldorf");
    assert_eq!(read.body["currency"], "EUR");

    let short = number.trim_start_matches('0');
    let read_short = get(&relay, &format!("{}/{short}", customers())).await;
    assert_eq!(read_short.status, 200);
    assert_eq!(read_short.body, read.body);

    // The seeded reference customer: `1000` and `0000001000` are one customer.
    let a = get(&relay, &format!("{}/1000", customers())).await;
    let b = get(&relay, &format!("{}/0000001000", customers())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b.body);
    assert_eq!(a.body["customer"], "0000001000");
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn change_touches_only_the_given_fields() {
    let (relay, agent) = relay_with_sim().await;
    let before = get(&relay, &format!("{}/1001", customers())).await;
    assert_eq!(before.status, 200);
    let changed = patch(
        &relay,
        &format!("{}/1001", customers()),
        json!({"city": "Heidelberg"}),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["customer"], "0000001001");
    assert_eq!(changed.body["city"], "Heidelberg");
    let after = get(&relay, &format!("{}/0000001001", customers())).await;
    assert_eq!(after.body["city"], "Heidelberg");
    for field in [
        "name",
        "street",
        "postal_code",
        "country",
        "email",
        "phone",
        "language",
    ] {
        assert_eq!(after.body[field], before.body[field], "{field} changed");
    }
    let street = patch(
        &relay,
        &format!("{}/1001", customers()),
        json!({"street": "Ring 7"}),
    )
    .await;
    assert_eq!(street.body["street"], "Ring 7");
    let after = get(&relay, &format!("{}/1001", customers())).await;
    assert_eq!(after.body["street"], "Ring 7");
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn business_errors_are_422_with_sap_message() {
    let (relay, agent) = relay_with_sim().await;
    let count = kna1_count(&relay).await;
    let failed = post(
        &relay,
        &customers(),
        json!({"name": "Wrong Area AG", "postal_code": "10115", "city": "Berlin",
               "country": "DE", "sales_org": "9999"}),
    )
    .await;
    assert_eq!(failed.status, 422, "{}", failed.body);
    assert_eq!(
        failed.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let error = &failed.body["rfc_error"];
    assert_eq!(error["msg_class"], "F2");
    assert_eq!(error["msg_number"], "156");
    assert_eq!(error["msg_type"], "E");
    assert_eq!(error["msg_v1"], "0000001000");
    assert_eq!(error["msg_v2"], "9999");
    assert!(failed.body["call_id"].as_str().is_some());
    // A missing reference customer is a 422 too, not a 404.
    let missing_ref = post(
        &relay,
        &customers(),
        json!({"name": "No Ref", "postal_code": "1", "city": "B", "country": "DE",
               "reference_customer": "4711"}),
    )
    .await;
    assert_eq!(missing_ref.status, 422, "{}", missing_ref.body);
    assert_eq!(missing_ref.body["rfc_error"]["msg_number"], "502");
    assert_eq!(kna1_count(&relay).await, count, "nothing was created");
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn unknown_customers_are_404() {
    let (relay, agent) = relay_with_sim().await;
    let read = get(&relay, &format!("{}/9999999999", customers())).await;
    assert_eq!(read.status, 404, "{}", read.body);
    assert_eq!(read.body["type"], "/problems/customer-not-found");
    assert_eq!(read.body["rfc_error"]["msg_class"], "F2");
    assert_eq!(read.body["rfc_error"]["msg_number"], "502");
    let change = patch(
        &relay,
        &format!("{}/424242", customers()),
        json!({"city": "X"}),
    )
    .await;
    assert_eq!(change.status, 404, "{}", change.body);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn invalid_requests_are_400_before_queueing() {
    // No agent at all: a 400 proves nothing was queued.
    let relay = TestRelay::start_with(common::business::business_config()).await;
    let cases = [
        (
            json!({"name": "x".repeat(40), "city": "Berlin", "country": "DE"}),
            "name",
        ),
        (json!({"name": "A", "city": "Berlin"}), "country"),
        (
            json!({"name": "A", "city": "B", "country": "DE", "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "A", "city": "B", "country": "DE", "search_term": "A"}),
            "search_term",
        ),
        (
            json!({"name": "A", "city": "B", "country": "DE", "phone": "1".repeat(17)}),
            "phone",
        ),
        (json!({"name": ["A"], "city": "B", "country": "DE"}), "name"),
    ];
    for (body, field) in cases {
        let answer = send(
            &relay,
            Method::POST,
            &customers(),
            Some(body.clone()),
            &[("prefer", "respond-async")],
        )
        .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let detail = answer.body["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{detail} should name {field}");
    }
    let nothing = patch(&relay, &format!("{}/1000", customers()), json!({})).await;
    assert_eq!(nothing.status, 400);
    let clear_name = patch(
        &relay,
        &format!("{}/1000", customers()),
        json!({"name": null}),
    )
    .await;
    assert_eq!(clear_name.status, 400);
    let bad_number = get(&relay, &format!("{}/12345678901", customers())).await;
    assert_eq!(bad_number.status, 400);
    relay.stop().await;
}

#[tokio::test]
async fn search_filters_by_name_city_and_country() {
    let (relay, agent) = relay_with_sim().await;
    let all = get(&relay, &format!("{}?country=DE", customers())).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let rows = all.body["customers"].as_array().unwrap();
    assert!(rows.len() >= 2);
    assert!(rows.iter().all(|r| r["country"] == "DE"));
    let becker = get(
        &relay,
        &format!("{}?name=beck*&city=Stuttgart", customers()),
    )
    .await;
    let rows = becker.body["customers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", becker.body);
    assert_eq!(rows[0]["customer"], "0000001001");
    assert!(
        rows[0]["search_term"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let limited = get(&relay, &format!("{}?limit=1", customers())).await;
    assert_eq!(limited.body["customers"].as_array().unwrap().len(), 1);
    let none = get(&relay, &format!("{}?name=Nobody*", customers())).await;
    assert_eq!(none.status, 200);
    assert_eq!(none.body["customers"], json!([]));
    let bad = get(&relay, &format!("{}?colour=red", customers())).await;
    assert_eq!(bad.status, 400);
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_create_not_done_in_time_is_polled_at_its_location() {
    let relay = TestRelay::start_with(common::business::business_config()).await;
    let body =
        json!({"name": "Later GmbH", "postal_code": "10115", "city": "Berlin", "country": "DE"});
    let accepted = send(
        &relay,
        Method::POST,
        &customers(),
        Some(body.clone()),
        &[
            ("prefer", "respond-async"),
            ("idempotency-key", "create-later"),
        ],
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let location = accepted.header("location").unwrap().to_owned();
    assert!(location.starts_with("/v1/calls/c_"));
    assert_eq!(accepted.body["action"], "customer.create");
    assert_eq!(get(&relay, &location).await.status, 202);

    let agent = SimAgent::start(&relay, "late-agent", SYSTEM).await;
    let done = poll(&relay, &location).await;
    assert_eq!(done.status, 201, "{}", done.body);
    let number = done.body["customer"].as_str().unwrap().to_owned();
    assert_eq!(done.body["name"], "Later GmbH");
    // The same key and body: the stored outcome, no second customer.
    let again = send(
        &relay,
        Method::POST,
        &customers(),
        Some(body),
        &[("idempotency-key", "create-later")],
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["customer"], number);
    agent.stop().await;
    relay.stop().await;
}
