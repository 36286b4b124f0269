//! The Basis functions every RFC client uses to test a connection:
//! `STFC_CONNECTION`, `RFC_PING` and `RFC_SYSTEM_INFO`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::session::{CLIENT, Ctx, USER};
use super::values::Input;
use crate::{Parameters, RfcError};

/// The system id.
pub(crate) const SYSID: &str = "SIM";
/// The release the simulator claims (S/4HANA-era Basis).
const RELEASE: &str = "758";
/// The host name the simulator reports.
const HOST: &str = "simhost";

/// `STFC_CONNECTION`: echoes `REQUTEXT` and answers with the system's identity,
/// formatted as a real system does (`SAP R/3 Rel. 758   Sysid: SIM      Date: ...`).
///
/// # Errors
/// None.
pub(crate) fn stfc_connection(_: &mut Ctx<'_>, input: &Input) -> Result<Parameters, RfcError> {
    let now = OffsetDateTime::now_utc();
    let date = today();
    let time = format!("{:02}{:02}{:02}", now.hour(), now.minute(), now.second());
    let resp = format!(
        "SAP R/3 Rel. {RELEASE}   Sysid: {SYSID:<8} Date: {date}   Time: {time}   Logon_Data: {CLIENT}/{USER}/E"
    );
    let mut out = Parameters::new();
    out.insert("ECHOTEXT".into(), input.str("REQUTEXT").into());
    out.insert("RESPTEXT".into(), resp.into());
    Ok(out)
}

/// `RFC_PING`: does nothing, successfully.
///
/// # Errors
/// None.
pub(crate) fn ping(_: &mut Ctx<'_>, _: &Input) -> Result<Parameters, RfcError> {
    Ok(Parameters::new())
}

/// `RFC_SYSTEM_INFO`: the `RFCSI` structure of the simulated system.
///
/// # Errors
/// None.
pub(crate) fn system_info(_: &mut Ctx<'_>, _: &Input) -> Result<Parameters, RfcError> {
    let mut si = Map::new();
    let mut set = |k: &str, v: &str| {
        si.insert(k.to_owned(), Value::from(v));
    };
    set("RFCPROTO", "011");
    set("RFCCHARTYP", "4103");
    set("RFCINTTYP", "LIT");
    set("RFCFLOTYP", "IE3");
    set("RFCDEST", &format!("{HOST}_{SYSID}_00"));
    set("RFCHOST", HOST);
    set("RFCSYSID", SYSID);
    set("RFCDATABS", SYSID);
    set("RFCDBHOST", HOST);
    set("RFCDBSYS", "SQLITE");
    set("RFCSAPRL", RELEASE);
    set("RFCMACH", "  390");
    set("RFCOPSYS", "Linux");
    set("RFCTZONE", "     0");
    set("RFCDAYST", "");
    set("RFCIPADDR", "127.0.0.1");
    set("RFCKERNRL", "793");
    set("RFCHOST2", HOST);
    set("RFCSI_RESV", "");
    set("RFCIPV6ADDR", "::1");
    let mut out = Parameters::new();
    out.insert("RFCSI_EXPORT".into(), Value::Object(si));
    out.insert("CURRENT_RESOURCES".into(), 8.into());
    out.insert("MAXIMAL_RESOURCES".into(), 10.into());
    out.insert("RECOMMENDED_DELAY".into(), 0.into());
    out.insert("FAST_SER_VERS".into(), 3.into());
    out.insert("S4_HANA".into(), "X".into());
    Ok(out)
}

/// Today's date (UTC) as DATS `YYYYMMDD`.
pub(crate) fn today() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}
