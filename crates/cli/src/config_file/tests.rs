//! Configuration files as both binaries read them: relative paths from the file's
//! folder, `SAPBRIDGE_*` variables and `--set` flags over the file, and the errors
//! for variables that look like settings but are none.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sapbridge_agent::{AgentConfig, BackendConfig};
use sapbridge_relay::RelayConfig;

use super::{Sources, load, load_with};
use crate::cmd::CliError;

const RELAY: &str = r#"
lease_secs = 300

[[api_keys]]
name = "k"
key = "client-key-0123456789abcdef0123456789"
systems = ["SIM"]

[[agent_tokens]]
name = "t"
token = "agent-token-0123456789abcdef012345678"
systems = ["SIM"]

[queue]
store = "sqlite"
path = "data/relay.db"
"#;

const AGENT: &str = r#"
relay_url = "ws://127.0.0.1:1/v1/agent/connect"
token_file = "secrets/agent.token"
data_dir = "state"
ca_file = "/etc/ssl/corp.pem"

[[systems]]
name = "SIM"
allow_functions = ["STFC_CONNECTION"]
backend = { type = "sim", db_path = "sim/SIM.db" }

[systems.http]
base_url = "http://127.0.0.1:1/"
allow_paths = ["/sap"]
csrf_fetch_path = "sap/"
user = "u"
password_env = "SAPBRIDGE_ODATA_PASSWORD"

[[systems]]
name = "PRD"
allow_functions = ["STFC_CONNECTION"]
[systems.backend]
type = "nwrfc"
library = "libsapnwrfc.so"
ashost = "sap"
sysnr = "00"
client = "100"
user = "u"
password_file = "prd.password"
"#;

/// Writes `text` as `name` in a fresh folder `conf` of a temporary directory.
fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let folder = dir.path().join("conf");
    std::fs::create_dir_all(&folder).expect("folder");
    let path = folder.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn sources(env: &[(&str, &str)], sets: &[&str]) -> Sources {
    Sources {
        env: env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
        sets: sets.iter().map(|s| (*s).to_owned()).collect(),
        others: vec!["SAPBRIDGE_CLUSTER_SECRET"],
    }
}

fn relay(env: &[(&str, &str)], sets: &[&str]) -> Result<RelayConfig, String> {
    let dir = tempfile::tempdir().expect("dir");
    let path = file(&dir, "relay.toml", RELAY);
    load_with(&path, &sources(env, sets)).map_err(message)
}

fn message(error: CliError) -> String {
    match error {
        CliError::Config(message) => message,
        CliError::Runtime(error) => panic!("not a configuration error: {error:#}"),
    }
}

#[test]
fn relative_paths_are_taken_from_the_files_folder() {
    let dir = tempfile::tempdir().expect("dir");
    let folder = std::path::absolute(dir.path().join("conf")).expect("absolute");
    let relay: RelayConfig = load(&file(&dir, "relay.toml", RELAY)).expect("relay");
    assert_eq!(relay.queue.path, Some(folder.join("data/relay.db")));

    let agent: AgentConfig = load(&file(&dir, "agent.toml", AGENT)).expect("agent");
    assert_eq!(agent.token_file, Some(folder.join("secrets/agent.token")));
    assert_eq!(agent.data_dir, folder.join("state"));
    // Absolute paths stay as written.
    assert_eq!(agent.ca_file, Some(PathBuf::from("/etc/ssl/corp.pem")));
    let BackendConfig::Sim { db_path, .. } = &agent.systems[0].backend else {
        panic!("sim backend");
    };
    assert_eq!(
        db_path.as_deref(),
        Some(folder.join("sim/SIM.db").as_path())
    );
    // A URL path is not a file; a bare library name is the loader's to find.
    let shown = format!("{:?}", agent.systems[0].http);
    assert!(shown.contains("\"sap/\""), "{shown}");
    let BackendConfig::Nwrfc(nwrfc) = &agent.systems[1].backend else {
        panic!("nwrfc backend");
    };
    let shown = format!("{nwrfc:?}");
    assert!(
        shown.contains("\"libsapnwrfc.so\"")
            && shown.contains(&*folder.join("prd.password").to_string_lossy()),
        "{shown}"
    );

    // The same file read from another working directory means the same: the
    // resolution depends on the file's place only (checked through a path with
    // `..` in it).
    let roundabout = dir.path().join("conf/../conf/relay.toml");
    let again: RelayConfig = load(&roundabout).expect("relay");
    assert!(again.queue.path.expect("path").is_absolute());
}

#[test]
fn variables_override_every_setting_by_its_type() {
    let config = relay(
        &[
            ("SAPBRIDGE_LEASE_SECS", "600"),
            ("SAPBRIDGE_ABSOLUTE_LOCATIONS", "true"),
            ("SAPBRIDGE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16"),
            ("SAPBRIDGE_QUEUE__PATH", "/srv/relay.db"),
            ("SAPBRIDGE_QUEUE__DURABILITY", "power-loss"),
            // A string of digits stays a string.
            ("SAPBRIDGE_CUSTOMER_DEFAULTS__SALES_ORG", "1000"),
            ("SAPBRIDGE_CUSTOMER_DEFAULTS__DISTRIBUTION_CHANNEL", "10"),
            // A list of tables, as a TOML array.
            (
                "SAPBRIDGE_AGENT_TOKENS",
                r#"[{ name = "env", token = "agent-token-from-the-environment-0123", systems = ["SIM", "PRD"] }]"#,
            ),
            ("SAPBRIDGE_PUBLIC_URL", "https://relay.example.com"),
        ],
        &[],
    )
    .expect("valid");
    assert_eq!(config.lease_secs, 600);
    assert!(config.absolute_locations);
    assert_eq!(config.trusted_proxies, ["10.0.0.0/8", "192.168.0.0/16"]);
    assert_eq!(config.queue.path, Some(PathBuf::from("/srv/relay.db")));
    assert_eq!(
        config.queue.durability,
        sapbridge_relay::Durability::PowerLoss
    );
    assert_eq!(config.customer_defaults.sales_org.as_deref(), Some("1000"));
    assert_eq!(
        config.customer_defaults.distribution_channel.as_deref(),
        Some("10")
    );
    assert_eq!(config.agent_tokens.len(), 1);
    assert_eq!(config.agent_tokens[0].systems, ["SIM", "PRD"]);
    assert_eq!(
        config.public_url.as_deref(),
        Some("https://relay.example.com")
    );
    // Settings the file did not mention keep its other values and the defaults.
    assert_eq!(config.api_keys.len(), 1);
    assert_eq!(config.max_wait_secs, RelayConfig::default().max_wait_secs);

    // An empty value clears an optional setting; a flag wins over a variable.
    let config = relay(
        &[
            ("SAPBRIDGE_PUBLIC_URL", ""),
            ("SAPBRIDGE_LEASE_SECS", "600"),
        ],
        &["lease_secs=900", "queue.max_size_mib=64"],
    )
    .expect("valid");
    assert_eq!(config.public_url, None);
    assert_eq!(config.lease_secs, 900);
    assert_eq!(config.queue.max_size_mib, Some(64));
}

#[test]
fn a_secret_from_a_variable_is_masked_and_never_quoted_in_errors() {
    let secret = "cluster-secret-0123456789abcdef-0123456789";
    let config = relay(&[("SAPBRIDGE_CLUSTER__SECRET", secret)], &[]).expect("valid");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(secret) && shown.contains("MASKED"),
        "{shown}"
    );
    // A value of the wrong type is named by its variable, never quoted.
    let error = relay(&[("SAPBRIDGE_LEASE_SECS", "pw-not-a-number")], &[]).unwrap_err();
    assert!(
        error.starts_with("SAPBRIDGE_LEASE_SECS: expected a whole number")
            && !error.contains("pw-not"),
        "{error}"
    );
    let error = relay(&[("SAPBRIDGE_QUEUE__STORE", "sqlit")], &[]).unwrap_err();
    assert!(error.starts_with("SAPBRIDGE_QUEUE__STORE: "), "{error}");
}

#[test]
fn variables_that_look_like_settings_but_are_none_are_refused() {
    for (name, wanted) in [
        // One underscore where a section needs two.
        (
            "SAPBRIDGE_QUEUE_PATH",
            "did you mean SAPBRIDGE_QUEUE__PATH?",
        ),
        // A misspelt setting.
        ("SAPBRIDGE_LEASE_SEC", "did you mean SAPBRIDGE_LEASE_SECS?"),
        (
            "SAPBRIDGE_MAX_CONECTIONS",
            "did you mean SAPBRIDGE_MAX_CONNECTIONS?",
        ),
        // An unknown key of a section.
        (
            "SAPBRIDGE_QUEUE__PAHT",
            "[queue] has no setting `paht` (did you mean SAPBRIDGE_QUEUE__PATH?)",
        ),
        (
            "SAPBRIDGE_QUEUE__COLOUR",
            "[queue] has no setting `colour` (known: ",
        ),
        // An unknown section.
        (
            "SAPBRIDGE_NOPE__X",
            "SAPBRIDGE_NOPE__X: there is no such setting",
        ),
    ] {
        let error = relay(&[(name, "1")], &[]).unwrap_err();
        assert!(
            error.starts_with(name) && error.contains(wanted),
            "{name}: {error}"
        );
    }
    let error = relay(&[], &["queue.paht=x"]).unwrap_err();
    assert!(
        error.starts_with("--set queue.paht: [queue] has no setting `paht` (did you mean `path`?)"),
        "{error}"
    );
    let error = relay(&[], &["lease_secs"]).unwrap_err();
    assert!(error.contains("expected KEY=VALUE"), "{error}");
    let error = relay(&[("SAPBRIDGE_LEASE_SECS__X", "1")], &[]).unwrap_err();
    assert!(error.contains("lease_secs is not a table"), "{error}");
}

/// Every `SAPBRIDGE_*` variable the project's commands, tests and benchmarks read.
const OTHERS: [&str; 27] = [
    "SAPBRIDGE_LOG",
    "SAPBRIDGE_LOG_FORMAT",
    "SAPBRIDGE_AGENT_TOKEN",
    "SAPBRIDGE_AGENT_CONFIG",
    "SAPBRIDGE_RELAY_CONFIG",
    "SAPBRIDGE_LISTEN",
    "SAPBRIDGE_QUEUE_URL",
    "SAPBRIDGE_ADVERTISE_URL",
    "SAPBRIDGE_CLUSTER_SECRET",
    "SAPBRIDGE_API_KEY",
    "SAPBRIDGE_SIM_LISTEN",
    "SAPBRIDGE_SIM_USER",
    "SAPBRIDGE_TYPES",
    "SAPBRIDGE_TYPES_ECHO",
    "SAPBRIDGE_TEST_POSTGRES",
    "SAPBRIDGE_TEST_SOAP_PASSWORD",
    "SAPBRIDGE_PG_BIN",
    "SAPBRIDGE_CHAOS_KILLS",
    "SAPBRIDGE_STUB_SUBMIT_DELAY_MS",
    "SAPBRIDGE_ERROR_NS",
    "SAPBRIDGE_BENCH_PG_URL",
    "SAPBRIDGE_URL",
    "SAPBRIDGE_CLIENT_CONFIG",
    "SAPBRIDGE_CHAOS_CLIENTS",
    "SAPBRIDGE_CHAOS_CREATES",
    "SAPBRIDGE_CHAOS_FAULT_MS",
    "SAPBRIDGE_CHAOS_LIMIT_SECS",
];

#[test]
fn other_programs_variables_are_left_alone() {
    let env: Vec<(&str, &str)> = OTHERS.iter().map(|name| (*name, "x")).collect();
    let config = relay(&env, &[]).expect("the relay ignores them");
    assert_eq!(config.lease_secs, 300);

    let dir = tempfile::tempdir().expect("dir");
    let path = file(&dir, "agent.toml", AGENT);
    let mut env = env;
    // The password variable the file names, and the agent's own data dir.
    env.push(("SAPBRIDGE_ODATA_PASSWORD", "x"));
    env.push(("SAPBRIDGE_DATA_DIR", "/srv/agent"));
    env.push((
        "SAPBRIDGE_RELAY_URL",
        "wss://relay.example.com/v1/agent/connect",
    ));
    let agent: AgentConfig = load_with(&path, &sources(&env, &[]))
        .map_err(message)
        .expect("agent");
    assert_eq!(agent.data_dir, Path::new("/srv/agent"));
    assert_eq!(agent.relay_url, "wss://relay.example.com/v1/agent/connect");
    // The agent's variable means nothing to the relay, and is no error there.
    relay(&[("SAPBRIDGE_DATA_DIR", "/srv/agent")], &[]).expect("ignored by the relay");
}

#[test]
fn a_problem_of_the_file_keeps_its_line_number() {
    let dir = tempfile::tempdir().expect("dir");
    let path = file(&dir, "relay.toml", &format!("colour = 1{RELAY}"));
    let error = load_with::<RelayConfig>(&path, &sources(&[("SAPBRIDGE_LEASE_SECS", "5")], &[]))
        .map_err(message)
        .unwrap_err();
    assert!(
        error.contains("relay.toml (line 1)") && error.contains("colour"),
        "{error}"
    );
}
