//! The operator console in a real browser: Debian's `chromium` driven by
//! `playwright-core` (Node 20) through `tests/console/console.mjs`, against
//! `sapbridge dev`: sign in, the agent online (with a live update), the connection
//! test, `BAPI_CUSTOMER_GETDETAIL2` from the function explorer, the overview's chart
//! counting those calls, that call in Calls
//! and in the audit log, the audit CSV, an API key created, used, revoked and
//! refused, sign-out; axe-core on every page with no
//! serious or critical violation, and no Content-Security-Policy violation.
//! Screenshots of every page are taken (and checked to exist); with
//! `UPDATE_SCREENSHOTS=1` they replace those in `docs/console/` (shown in the README).
//!
//! Needs `/usr/bin/chromium`, `node` and `npm ci` in `tests/console/`: the test runs
//! `tests/provision.sh console`, which installs what is missing. When that cannot
//! (Debian packages need root), the test fails and says why (it does not skip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sapbridge_tests::{Proc, free_port};

/// How long `sapbridge dev` may take to start, and the browser run to finish.
const DEADLINE: Duration = Duration::from_secs(180);
/// The operator key `sapbridge dev` gets.
const KEY: &str = "console-browser-key";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    sapbridge_tests::provide("console");
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "chromium is not at {} (CHROMIUM names another)",
        path.display()
    );
    path
}

fn script() -> PathBuf {
    let folder = repo().join("tests/console");
    assert!(
        folder
            .join("node_modules/playwright-core/package.json")
            .exists()
            && folder.join("node_modules/axe-core/axe.min.js").exists(),
        "playwright-core and axe-core are missing after tests/provision.sh console"
    );
    folder.join("console.mjs")
}

#[test]
fn an_operator_uses_the_console_in_chromium() {
    let chromium = chromium();
    let script = script();
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed (tests/provision.sh console installs it): {node:?}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sapbridge"));
    command
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--api-key",
            KEY,
        ])
        .arg("--data-dir")
        .arg(dir.path().join("dev"));
    let _dev = Proc::spawn_ready(&mut command, "sapbridge dev is running", DEADLINE)
        .expect("sapbridge dev");

    // Into the test's folder, so that the check below sees this run's files; into
    // docs/console/ (the README's pictures) with UPDATE_SCREENSHOTS=1.
    let screenshots = match std::env::var_os("UPDATE_SCREENSHOTS") {
        Some(_) => repo().join("docs/console"),
        None => dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&screenshots).expect("screenshots folder");
    let out = dir.path().join("browser.out");
    let log = std::fs::File::create(&out).expect("output file");
    let mut browser = Command::new("node");
    browser
        .arg(&script)
        .env("CONSOLE_URL", &url)
        .env("CONSOLE_KEY", KEY)
        .env("CONSOLE_SYSTEM", "SIM")
        .env("SCREENSHOTS", &screenshots)
        .env("USER_DATA_DIR", dir.path().join("profile"))
        .env("CHROMIUM", &chromium)
        // The script logs its steps on stderr (Proc discards stdout).
        .stderr(log);
    let mut browser = Proc::spawn(&mut browser).expect("node");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = browser.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the browser run did not finish within {DEADLINE:?}:\n{}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    // The run's steps, for the log (`--nocapture`).
    println!("{output}");
    assert!(
        status.success(),
        "the browser run failed ({status}); its screenshot is {}:\n{output}",
        dir.path().join("failure.png").display()
    );
    assert!(output.contains(r#"{"step":"done","ok":true}"#), "{output}");
    for name in [
        "sign-in",
        "overview",
        "connection-test",
        "function-explorer",
        "calls-search",
        "calls",
        "audit",
    ] {
        let shot = screenshots.join(format!("{name}.png"));
        assert!(shot.exists(), "no screenshot {}", shot.display());
    }
}
