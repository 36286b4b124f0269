//! `sapbridge-agent doctor` / `sapbridge agent doctor` as an administrator runs
//! them: against the NW RFC stub library (found, logon, functions), a wrong
//! password (SAP's error, one logon, the functions skipped), a missing library
//! (named, with what to do), and the embedded simulator. The exit code says
//! whether anything failed; the password never appears.

#[path = "../../nwrfc/tests/fixtures/stub_library.rs"]
mod stub_library;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sapbridge_sap::sim::{SIM_PASSWORD, SIM_USER};

const BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const WRONG_PASSWORD: &str = "not-the-password-4711";

fn nwrfc_system(name: &str, library: &Path, db: &Path, password: &Path, allow: &str) -> String {
    format!(
        r#"
[[systems]]
name = "{name}"
allow_functions = [{allow}]
[systems.backend]
type = "nwrfc"
library = "{library}"
ashost = "{db}"
sysnr = "00"
client = "001"
user = "{SIM_USER}"
password_file = "{password}"
timeout_secs = 20
"#,
        library = library.display(),
        db = db.display(),
        password = password.display(),
    )
}

fn sim_system(dir: &Path, allow: &str) -> String {
    format!(
        r#"
[[systems]]
name = "SIM"
allow_functions = [{allow}]
backend = {{ type = "sim", db_path = "{sim}" }}
"#,
        sim = dir.join("sim.db").display()
    )
}

fn write_config(dir: &Path, file: &str, systems: &[String]) -> PathBuf {
    let text = format!(
        "relay_url = \"ws://127.0.0.1:9/v1/agent/connect\"\ntoken = \"doctor-token\"\n\
         agent_id = \"doctor\"\ndata_dir = \"{}\"\n{}",
        dir.join("agent").display(),
        systems.concat()
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("SAPBRIDGE_LOG", "warn")
        .env_remove("SAPBRIDGE_AGENT_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// The report's line for `what` under `system`.
fn line<'a>(report: &'a str, system: &str, what: &str) -> &'a str {
    let header = format!("system {system} (");
    report
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .find(|l| {
            l.trim_start()[4..]
                .trim_start()
                .starts_with(&format!("{what}:"))
        })
        .unwrap_or_else(|| panic!("no line `{what}` for {system} in:\n{report}"))
}

fn assert_mark(report: &str, system: &str, what: &str, mark: &str, detail: &str) {
    let l = line(report, system, what);
    assert!(
        l.trim_start().starts_with(mark) && l.contains(detail),
        "{system} {what}: expected `{mark}` with `{detail}`, got `{l}`\n{report}"
    );
}

#[test]
fn the_doctor_names_the_library_the_logon_and_each_function() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.password");
    let bad = dir.path().join("bad.password");
    std::fs::write(&good, format!("{SIM_PASSWORD}\n")).unwrap();
    std::fs::write(&bad, format!("{WRONG_PASSWORD}\n")).unwrap();
    let stub = stub_library::stub_library();
    let db = dir.path().join("rfc.db");
    let allow = r#""STFC_CONNECTION", "Z_NOT_THERE", "BAPI_CUSTOMER_*""#;
    let config = write_config(
        dir.path(),
        "agent.toml",
        &[
            nwrfc_system("RFC", stub, &db, &good, allow),
            nwrfc_system("LOCKED", stub, &db, &bad, allow),
            nwrfc_system(
                "GONE",
                &dir.path().join("no-sdk/libsapnwrfc.so"),
                &db,
                &good,
                allow,
            ),
            sim_system(dir.path(), r#""RFC_READ_TABLE", "Z_NOT_THERE""#),
        ],
    );

    let output = run(AGENT_BIN, &["doctor", "--config", config.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{report}\n{stderr}");
    println!("{report}");

    // The stub: library and version, logon with the release, each function.
    assert_mark(&report, "RFC", "NW RFC library", "ok", "patch level");
    assert_mark(
        &report,
        "RFC",
        "NW RFC library",
        "ok",
        &stub.display().to_string(),
    );
    assert_mark(&report, "RFC", "logon", "ok", "release");
    assert_mark(&report, "RFC", "function STFC_CONNECTION", "ok", "exists");
    assert_mark(
        &report,
        "RFC",
        "function Z_NOT_THERE",
        "FAIL",
        "does not exist",
    );
    assert_mark(
        &report,
        "RFC",
        "function BAPI_CUSTOMER_*",
        "skip",
        "pattern",
    );
    // A wrong password: SAP's own error, nothing else tried.
    assert_mark(&report, "LOCKED", "logon", "FAIL", "LOGON_FAILURE");
    assert_mark(
        &report,
        "LOCKED",
        "function STFC_CONNECTION",
        "skip",
        "no logon",
    );
    // No library: named, with what to do.
    assert_mark(&report, "GONE", "backend", "FAIL", "no-sdk/libsapnwrfc.so");
    assert_mark(
        &report,
        "GONE",
        "backend",
        "FAIL",
        "install SAP's NW RFC SDK",
    );
    // The embedded simulator.
    assert_mark(&report, "SIM", "logon", "ok", "RFC_PING answered");
    assert_mark(&report, "SIM", "function RFC_READ_TABLE", "ok", "exists");
    assert_mark(
        &report,
        "SIM",
        "function Z_NOT_THERE",
        "FAIL",
        "does not exist",
    );
    assert!(report.ends_with("4 check(s) failed\n"), "{report}");
    for text in [&report, &stderr] {
        assert!(
            !text.contains(WRONG_PASSWORD),
            "the password leaked:\n{text}"
        );
        assert!(!text.contains(SIM_PASSWORD), "the password leaked:\n{text}");
    }

    // A healthy configuration passes, through both binaries.
    let healthy = write_config(
        dir.path(),
        "healthy.toml",
        &[
            nwrfc_system("RFC", stub, &db, &good, r#""STFC_CONNECTION""#),
            sim_system(dir.path(), r#""STFC_CONNECTION", "BAPI_*""#),
        ],
    );
    for (program, args) in [
        (AGENT_BIN, vec!["doctor", "--config"]),
        (BIN, vec!["agent", "doctor", "--config"]),
    ] {
        let mut args = args;
        args.push(healthy.to_str().unwrap());
        let output = run(program, &args);
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{program}: {report}");
        assert!(report.ends_with("all checks passed\n"), "{report}");
    }
}
