//! The simulator's customer BAPIs: happy paths and business errors in RETURN.

use sapbridge_sap::sim::{SimOptions, Simulator};
use sapbridge_sap::{Parameters, SapConnection, SapSystem};
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

async fn call(c: &mut Box<dyn SapConnection>, f: &str, p: Value) -> Parameters {
    c.call(f, &params(p)).await.expect(f)
}

fn copyref(ref_customer: &str, salesorg: &str) -> Value {
    json!({ "SALESORG": salesorg, "DISTR_CHAN": "10", "DIVISION": "00", "REF_CUSTMR": ref_customer })
}

fn company() -> Value {
    json!({
        "NAME": "Neukunde GmbH", "STREET": "Hauptstrasse", "HOUSE_NO": "5", "POSTL_COD1": "10115",
        "CITY": "Berlin", "COUNTRY": "DE", "LANGU_ISO": "DE", "CURRENCY": "EUR",
        "TEL1_NUMBR": "+49 30 1234", "E_MAIL": "info@neukunde.example"
    })
}

#[tokio::test]
async fn create_then_read_back_with_pyrfc_shapes() {
    let (_dir, mut c) = conn().await;
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        json!({
            "PI_COMPANYDATA": company(),
            "PI_OPT_COMPANYDATA": { "PMNTTRMS": "0002" },
            "PI_COPYREFERENCE": copyref("0000001000", "1000"),
        }),
    )
    .await;
    assert_eq!(out["CUSTOMERNO"], "0000100001");
    let ret = &out["RETURN"];
    assert_eq!(ret["TYPE"], "");
    assert_eq!(ret["NUMBER"], "000", "NUMC comes back zero-padded");
    assert_eq!(ret["LOG_MSG_NO"], "000000");
    assert!(
        ret.get("MESSAGE_V4").is_some(),
        "every field of BAPIRETURN1 is present"
    );

    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": "100001", "COMPANYCODE": "1000" }),
    )
    .await;
    assert_eq!(out["RETURN"]["TYPE"], "");
    let addr = &out["CUSTOMERADDRESS"];
    assert_eq!(addr["CUSTOMER"], "0000100001");
    assert_eq!(addr["NAME"], "Neukunde GmbH");
    assert_eq!(addr["STREET"], "Hauptstrasse 5");
    assert_eq!(addr["LANGU"], "D", "ISO language converted");
    assert_eq!(addr["LANGU_ISO"], "DE");
    assert_eq!(addr["INTERNET"], "info@neukunde.example");
    assert_eq!(addr["CURRENCY"], "EUR");
    let general = &out["CUSTOMERGENERALDETAIL"];
    assert_eq!(
        general["ACCNT_GRP"], "KUNA",
        "account group copied from the reference"
    );
    assert_eq!(general["ENTERED_BY"], "SIMUSER");
    assert_eq!(general["CREAT_DATE"].as_str().map(str::len), Some(8));
    assert_eq!(general["LOC_NO_1"], "0000000", "NUMC initial is zeros");
    let company = &out["CUSTOMERCOMPANYDETAIL"];
    assert_eq!(company["COMP_CODE"], "1000");
    assert_eq!(
        company["PMNTTRMS"], "0002",
        "optional data overrides the reference"
    );
    assert_eq!(out["CUSTOMERBANKDETAIL"], json!([]));
}

#[tokio::test]
async fn create_as_person() {
    let (_dir, mut c) = conn().await;
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        json!({
            "PI_PERSONALDATA": {
                "FIRSTNAME": "Erika", "LASTNAME": "Mustermann", "DATE_BIRTH": "19800101",
                "STREET": "Weg", "POSTL_COD1": "50667", "CITY": "Köln", "COUNTRY": "DE",
                "LANGU_P": "D", "CURRENCY": "EUR"
            },
            "PI_COPYREFERENCE": copyref("1000", "1000"),
        }),
    )
    .await;
    assert_eq!(out["RETURN"]["TYPE"], "");
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": out["CUSTOMERNO"] }),
    )
    .await;
    assert_eq!(out["CUSTOMERADDRESS"]["NAME"], "Erika Mustermann");
    assert_eq!(
        out["CUSTOMERCOMPANYDETAIL"]["COMP_CODE"], "",
        "no company code asked"
    );
}

#[tokio::test]
async fn create_business_errors_come_back_in_return() {
    let (_dir, mut c) = conn().await;
    let cases = [
        (
            json!({ "PI_COMPANYDATA": company(), "PI_COPYREFERENCE": copyref("9999", "1000") }),
            "F2",
            "502",
            "0000009999",
        ),
        (
            json!({ "PI_COMPANYDATA": company(), "PI_COPYREFERENCE": copyref("1000", "3000") }),
            "F2",
            "156",
            "0000001000",
        ),
        (
            json!({ "PI_COMPANYDATA": company(), "PI_COPYREFERENCE": { "REF_CUSTMR": "1000" } }),
            "F2",
            "267",
            "",
        ),
        (
            json!({ "PI_COMPANYDATA": { "NAME": "No City" }, "PI_COPYREFERENCE": copyref("1000", "1000") }),
            "00",
            "055",
            "PI_COMPANYDATA-CITY",
        ),
        (
            json!({ "PI_COPYREFERENCE": copyref("1000", "1000") }),
            "F2",
            "048",
            "",
        ),
        (
            json!({ "PI_COMPANYDATA": company(), "PI_PERSONALDATA": { "LASTNAME": "X" }, "PI_COPYREFERENCE": copyref("1000", "1000") }),
            "F2",
            "048",
            "",
        ),
    ];
    for (input, class, number, v1) in cases {
        let out = call(&mut c, "BAPI_CUSTOMER_CREATEFROMDATA1", input.clone()).await;
        let ret = &out["RETURN"];
        assert_eq!(
            (
                ret["TYPE"].as_str(),
                ret["ID"].as_str(),
                ret["NUMBER"].as_str()
            ),
            (Some("E"), Some(class), Some(number)),
            "{input}"
        );
        assert_eq!(ret["MESSAGE_V1"], v1, "{input}");
        assert_eq!(out["CUSTOMERNO"], "", "no number on error");
    }
    // No number was drawn by the failed attempts.
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_CREATEFROMDATA1",
        json!({ "PI_COMPANYDATA": company(), "PI_COPYREFERENCE": copyref("1000", "1000") }),
    )
    .await;
    assert_eq!(out["CUSTOMERNO"], "0000100001");
}

#[tokio::test]
async fn change_only_touches_flagged_fields() {
    let (_dir, mut c) = conn().await;
    let out = call(&mut c, "BAPI_CUSTOMER_CHANGEFROMDATA1", json!({
        "CUSTOMERNO": "0000001001", "PI_SALESORG": "1000", "PI_DISTR_CHAN": "10", "PI_DIVISION": "00",
        "PI_COMPANYDATA": { "NAME": "Becker Maschinenbau SE", "CITY": "IGNORED", "TEL1_NUMBR": "" },
        "PI_COMPANYDATAX": { "NAME": "X", "TEL1_NUMBR": "X" },
        "PI_OPT_COMPANYDATA": { "PMNTTRMS": "0003" }, "PI_OPT_COMPANYDATAX": { "PMNTTRMS": "X" },
    }))
    .await;
    assert_eq!(out["RETURN"]["TYPE"], "");
    assert_eq!(out["PE_COMPANYDATA"]["NAME"], "Becker Maschinenbau SE");
    assert_eq!(
        out["PE_COMPANYDATA"]["CITY"], "Stuttgart",
        "unflagged field unchanged"
    );
    assert_eq!(
        out["PE_COMPANYDATA"]["TEL1_NUMBR"], "",
        "flagged empty value clears"
    );
    assert_eq!(out["PE_OPT_COMPANYDATA"]["PMNTTRMS"], "0003");
    call(&mut c, "BAPI_TRANSACTION_COMMIT", json!({ "WAIT": "X" })).await;
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": "1001" }),
    )
    .await;
    assert_eq!(out["CUSTOMERADDRESS"]["NAME"], "Becker Maschinenbau SE");
    assert_eq!(out["CUSTOMERADDRESS"]["CITY"], "Stuttgart");
}

#[tokio::test]
async fn change_errors() {
    let (_dir, mut c) = conn().await;
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_CHANGEFROMDATA1",
        json!({ "CUSTOMERNO": "4711", "PI_SALESORG": "1000" }),
    )
    .await;
    assert_eq!(
        (
            out["RETURN"]["ID"].as_str(),
            out["RETURN"]["NUMBER"].as_str()
        ),
        (Some("F2"), Some("502"))
    );
    assert_eq!(
        out["PE_COMPANYDATA"]["NAME"], "",
        "exports present but initial"
    );
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_CHANGEFROMDATA1",
        json!({
            "CUSTOMERNO": "1004", "PI_SALESORG": "1000", "PI_DISTR_CHAN": "10", "PI_DIVISION": "00",
            "PI_COMPANYDATA": { "CITY": "Boston" }, "PI_COMPANYDATAX": { "CITY": "X" },
        }),
    )
    .await;
    assert_eq!(
        out["RETURN"]["NUMBER"], "156",
        "customer 1004 is in sales org 3000"
    );
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_CHANGEFROMDATA1",
        json!({
            "CUSTOMERNO": "1001", "PI_SALESORG": "1000",
            "PI_COMPANYDATA": { "NAME": "" }, "PI_COMPANYDATAX": { "NAME": "X" },
        }),
    )
    .await;
    assert_eq!(
        (
            out["RETURN"]["NUMBER"].as_str(),
            out["RETURN"]["MESSAGE_V1"].as_str()
        ),
        (Some("055"), Some("PI_COMPANYDATA-NAME"))
    );
}

#[tokio::test]
async fn getdetail_unknown_customer_and_wrong_company_code() {
    let (_dir, mut c) = conn().await;
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": "42" }),
    )
    .await;
    let ret = &out["RETURN"];
    assert_eq!(
        (
            ret["TYPE"].as_str(),
            ret["ID"].as_str(),
            ret["NUMBER"].as_str()
        ),
        (Some("E"), Some("F2"), Some("502"))
    );
    assert_eq!(ret["MESSAGE_V1"], "0000000042");
    assert_eq!(ret["MESSAGE"], "Customer 0000000042 does not exist");
    assert_eq!(out["CUSTOMERADDRESS"]["CUSTOMER"], "");
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETDETAIL2",
        json!({ "CUSTOMERNO": "1004", "COMPANYCODE": "1000" }),
    )
    .await;
    assert_eq!(out["RETURN"]["NUMBER"], "503");
    assert_eq!(out["CUSTOMERADDRESS"]["CITY"], "Chicago");
}

#[tokio::test]
async fn getlist_ranges_maxrows_and_errors() {
    let (_dir, mut c) = conn().await;
    let customers = |out: &Parameters| -> Vec<String> {
        out["ADDRESSDATA"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["CUSTOMER"].as_str().map(str::to_owned))
            .collect()
    };
    let out = call(&mut c, "BAPI_CUSTOMER_GETLIST", json!({
        "IDRANGE": [{ "SIGN": "I", "OPTION": "BT", "LOW": "1001", "HIGH": "1004" }, { "SIGN": "E", "OPTION": "EQ", "LOW": "1002" }]
    }))
    .await;
    assert_eq!(customers(&out), ["0000001001", "0000001003", "0000001004"]);
    assert_eq!(out["RETURN"]["TYPE"], "");
    assert_eq!(out["ADDRESSDATA"][2]["CITY"], "Chicago");
    assert_eq!(
        out["IDRANGE"][0]["LOW"], "1001",
        "TABLES parameters come back as sent"
    );
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETLIST",
        json!({ "MAXROWS": 2, "IDRANGE": [{ "SIGN": "I", "OPTION": "CP", "LOW": "*" }] }),
    )
    .await;
    assert_eq!(customers(&out).len(), 2);
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETLIST",
        json!({ "IDRANGE": [{ "SIGN": "I", "OPTION": "EQ", "LOW": "77" }] }),
    )
    .await;
    assert_eq!(out["RETURN"]["NUMBER"], "718");
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETLIST",
        json!({ "IDRANGE": [{ "SIGN": "Q", "OPTION": "EQ", "LOW": "77" }] }),
    )
    .await;
    assert_eq!(
        (
            out["RETURN"]["ID"].as_str(),
            out["RETURN"]["NUMBER"].as_str()
        ),
        (Some("S&"), Some("026"))
    );
    let out = call(
        &mut c,
        "BAPI_CUSTOMER_GETLIST",
        json!({ "IDRANGE": [{ "SIGN": "I", "OPTION": "XX", "LOW": "77" }] }),
    )
    .await;
    assert_eq!(out["RETURN"]["NUMBER"], "027");
}
