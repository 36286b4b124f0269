//! The binaries run exactly as the shipped systemd units and container images run
//! them: the command line, user id, working directory and environment are read
//! from `deploy/sapbridge-*.service` and `deploy/Dockerfile` (never repeated
//! here), the configuration is the shipped `deploy/*.toml`, and relay and agent
//! must serve a call through the simulator.
//!
//! No systemd or Docker runs here, so the test plays their part: everything
//! happens under a temporary root `R` (a unit's `/var/lib/sapbridge` is
//! `R/var/lib/sapbridge`, the binaries are installed at `R/usr/local/bin`), the
//! state directories are created for the service's user as systemd and the
//! Dockerfile create them, the process starts with an empty environment plus the
//! unit's or image's, and runs as uid/gid 10001 (the test must run as root to
//! switch to it, as CI does). The only other changes are those an operator makes:
//! keys and tokens added, the relay's URL set, and the listen port (a free one).
//! The shipped configuration's absolute paths reach the temporary root through the
//! same `SAPBRIDGE_*` overrides a container would be given.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sapbridge_tests::{Proc, free_port};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const RELAY_BIN: &str = env!("CARGO_BIN_EXE_sapbridge");
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_sapbridge-agent");
const DEADLINE: Duration = Duration::from_secs(30);
/// The PATH systemd gives a service (and a Debian image's default).
const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy().join(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// How a service manager starts a process.
#[derive(Debug, Default, Clone)]
struct Launch {
    argv: Vec<String>,
    /// `uid` or `uid:gid` (image) or a user name (unit).
    user: String,
    workdir: String,
    env: BTreeMap<String, String>,
    /// Directories the manager creates for the user (StateDirectory, VOLUME).
    state_dirs: Vec<String>,
    /// The image's HEALTHCHECK command, if any.
    healthcheck: Option<Vec<String>>,
}

/// Joins lines ending in `\` with the next one.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed.trim_start().starts_with('#') && current.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            lines.push(std::mem::take(&mut current));
        }
    }
    lines
}

/// The `[Service]` section of a unit file.
fn unit(name: &str) -> Launch {
    let mut launch = Launch::default();
    let mut in_service = false;
    for line in logical_lines(&read(name)) {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| in_service) else {
            continue;
        };
        match key {
            "ExecStart" => launch.argv = value.split_whitespace().map(str::to_owned).collect(),
            "User" => launch.user = value.to_owned(),
            "WorkingDirectory" => launch.workdir = value.to_owned(),
            "StateDirectory" => launch
                .state_dirs
                .extend(value.split_whitespace().map(|d| format!("/var/lib/{d}"))),
            "Environment" => {
                for assignment in value.split_whitespace() {
                    let (k, v) = assignment.split_once('=').expect("Environment=K=V");
                    launch
                        .env
                        .insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            _ => {}
        }
    }
    launch
}

/// A Dockerfile instruction's JSON array (exec form).
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not an exec-form array {text}: {e}"))
}

/// The stage `target` of the Dockerfile, with what it inherits from its base stage.
fn image(target: &str) -> Launch {
    let mut stages: BTreeMap<String, Launch> = BTreeMap::new();
    let mut name = String::new();
    let mut launch = Launch::default();
    let (mut entrypoint, mut cmd) = (Vec::new(), Vec::new());
    let finish = |stages: &mut BTreeMap<String, Launch>,
                  name: &str,
                  launch: &Launch,
                  entrypoint: &[String],
                  cmd: &[String]| {
        let mut done = launch.clone();
        done.argv = entrypoint.iter().chain(cmd).cloned().collect();
        stages.insert(name.to_owned(), done);
    };
    for line in logical_lines(&read("Dockerfile")) {
        let (instruction, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match instruction.to_ascii_uppercase().as_str() {
            "FROM" => {
                if !name.is_empty() {
                    finish(&mut stages, &name, &launch, &entrypoint, &cmd);
                }
                let words: Vec<&str> = rest.split_whitespace().collect();
                name = words.last().expect("FROM x AS name").to_string();
                launch = stages.get(words[0]).cloned().unwrap_or_default();
                launch.healthcheck = None;
                (entrypoint, cmd) = (Vec::new(), Vec::new());
            }
            "USER" => launch.user = rest.trim().to_owned(),
            "WORKDIR" => launch.workdir = rest.trim().to_owned(),
            "ENV" => {
                for assignment in rest.split_whitespace() {
                    let (k, v) = assignment.split_once('=').expect("ENV K=V");
                    launch
                        .env
                        .insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            "VOLUME" => launch.state_dirs.extend(exec_form(rest)),
            "ENTRYPOINT" => entrypoint = exec_form(rest),
            "CMD" => cmd = exec_form(rest),
            "HEALTHCHECK" => {
                launch.healthcheck = rest
                    .split_once("CMD ")
                    .map(|(_, command)| exec_form(command));
            }
            _ => {}
        }
    }
    finish(&mut stages, &name, &launch, &entrypoint, &cmd);
    stages
        .remove(target)
        .unwrap_or_else(|| panic!("no stage {target}"))
}

/// The uid and gid of the images' user (`USER 10001:10001`).
fn service_ids() -> (u32, u32) {
    let user = image("relay").user;
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    (
        uid.parse().expect("numeric uid"),
        gid.parse().expect("numeric gid"),
    )
}

/// The temporary root the services run in.
struct Root {
    dir: tempfile::TempDir,
    uid: u32,
    gid: u32,
}

impl Drop for Root {
    /// A failed test shows what the services logged (kept out of a passing run).
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["relay.log", "agent.log"] {
                let log = std::fs::read_to_string(self.dir.path().join(name))
                    .unwrap_or_else(|e| e.to_string());
                eprintln!("--- {name} ---\n{log}");
            }
        }
    }
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let (uid, gid) = service_ids();
        Self { dir, uid, gid }
    }

    /// `path` (absolute, as the unit or image names it) under the root.
    fn at(&self, path: &str) -> PathBuf {
        assert!(path.starts_with('/'), "{path} is not absolute");
        self.dir.path().join(&path[1..])
    }

    /// A log file outside the services' tree for a service's stderr (journald's
    /// or Docker's part).
    fn log(&self, name: &str) -> Stdio {
        std::fs::File::create(self.dir.path().join(name))
            .expect("log file")
            .into()
    }

    fn text(&self, path: &str) -> String {
        self.at(path).to_string_lossy().into_owned()
    }

    /// Installs a binary where the unit or image starts it.
    fn install(&self, at: &str, binary: &str) {
        let target = self.at(at);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("bin dir");
        if std::fs::hard_link(binary, &target).is_err() {
            std::fs::copy(binary, &target).expect("copy binary");
        }
    }

    /// Writes a file readable by root and the service's group only (`install -m
    /// 0640 -g sapbridge`), in a folder of the same kind.
    fn secret_file(&self, path: &str, text: &str) {
        let target = self.at(path);
        let folder = target.parent().expect("parent");
        std::fs::create_dir_all(folder).expect("folder");
        std::os::unix::fs::chown(folder, Some(0), Some(self.gid)).expect("chown folder");
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        std::fs::write(&target, text).expect("write");
        std::os::unix::fs::chown(&target, Some(0), Some(self.gid)).expect("chown");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }

    /// Creates the directories the service manager creates for the user.
    fn state_dirs(&self, launch: &Launch) {
        for dir in &launch.state_dirs {
            let path = self.at(dir);
            std::fs::create_dir_all(&path).expect("state dir");
            std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).expect("chown");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
    }

    /// The command a service manager would run for `launch`: its binary and
    /// arguments (absolute paths under the root), its working directory, only its
    /// environment (plus `extra`, absolute paths under the root), as uid/gid 10001.
    fn command(&self, launch: &Launch, extra: &[(String, String)]) -> Command {
        let mut argv = launch.argv.iter().map(|arg| {
            if arg.starts_with('/') {
                self.text(arg)
            } else {
                arg.clone()
            }
        });
        let program = argv.next().expect("a command line");
        let mut command = Command::new(program);
        command
            .args(argv)
            .current_dir(self.at(&launch.workdir))
            .env_clear()
            .env("PATH", SERVICE_PATH)
            .uid(self.uid)
            .gid(self.gid);
        for (k, v) in launch.env.iter().chain(extra.iter().map(|(k, v)| (k, v))) {
            command.env(k, v);
        }
        command
    }

    /// The `SAPBRIDGE_*` overrides that move the shipped file's absolute paths
    /// under the root: as a container is given them (`SAPBRIDGE_QUEUE__PATH`).
    fn path_overrides(&self, config: &str) -> Vec<(String, String)> {
        let table: toml::Table = toml::from_str(config).expect("shipped TOML");
        let mut overrides = Vec::new();
        let mut visit = |section: Option<&str>, key: &str, value: &toml::Value| {
            let names_a_file = key == "path" || key.ends_with("_file") || key.ends_with("_dir");
            if let (true, Some(path)) = (names_a_file, value.as_str())
                && path.starts_with('/')
            {
                let name = match section {
                    Some(s) => format!("SAPBRIDGE_{s}__{key}"),
                    None => format!("SAPBRIDGE_{key}"),
                };
                overrides.push((name.to_ascii_uppercase(), self.text(path)));
            }
        };
        for (key, value) in &table {
            match value {
                toml::Value::Table(inner) => {
                    for (k, v) in inner {
                        visit(Some(key), k, v);
                    }
                }
                other => visit(None, key, other),
            }
        }
        assert!(
            !overrides.is_empty(),
            "the shipped file names no absolute path"
        );
        overrides
    }
}

/// Fails unless the test runs as root (it must switch to the services' uid).
fn assert_root() {
    let probe = tempfile::NamedTempFile::new().expect("probe file");
    let uid = probe.as_file().metadata().expect("metadata").uid();
    assert_eq!(
        uid, 0,
        "this test runs the services as uid 10001 like their units and images, which \
         needs root (CI runs as root)"
    );
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

fn sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Sends SIGTERM and waits for a clean exit.
fn terminate(mut proc: Proc, what: &str) {
    let pid = proc.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(status) = proc.exited() {
            assert!(status.success(), "{what} stopped with {status}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn call_until_ok(url: &str, key: &str, text: &str, procs: &mut [&mut Proc]) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        for proc in procs.iter_mut() {
            assert!(
                proc.exited().is_none(),
                "a service exited: {:?}",
                proc.exited()
            );
        }
        let response = http
            .post(format!("{url}/v1/systems/SIM/functions/STFC_CONNECTION"))
            .bearer_auth(key)
            .header("prefer", "wait=5")
            .json(&json!({"REQUTEXT": text}))
            .send()
            .await;
        if let Ok(r) = response
            && r.status() == 200
        {
            return r.json().await.expect("json body");
        }
        assert!(tokio::time::Instant::now() < deadline, "no 200 from {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that `path` under the root exists and belongs to the service's user.
fn owned_by_service(root: &Root, path: &str) {
    let meta = std::fs::metadata(root.at(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        meta.uid(),
        root.uid,
        "{path} not written by the service's user"
    );
}

#[tokio::test]
async fn the_units_serve_a_call_as_installed() {
    assert_root();
    let root = Root::new();
    let (relay, agent) = (
        unit("sapbridge-relay.service"),
        unit("sapbridge-agent.service"),
    );
    // The units run as the user sysusers.d creates.
    let sysusers = read("sapbridge.sysusers");
    for launch in [&relay, &agent] {
        assert!(
            sysusers
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["u", launch.user.as_str()])),
            "User={} is not created by deploy/sapbridge.sysusers",
            launch.user
        );
        // systemd runs the service in its state directory.
        assert!(launch.state_dirs.contains(&launch.workdir), "{launch:?}");
    }
    root.install(&relay.argv[0], RELAY_BIN);
    root.install(&agent.argv[0], AGENT_BIN);
    root.state_dirs(&relay);
    root.state_dirs(&agent);

    // The operator's steps: the shipped relay.toml with a key and a token added,
    // the shipped agent.toml pointing at the relay, the token in its file.
    let (key, token) = (random_secret(), random_secret());
    let shipped_relay = read("relay.toml");
    let relay_config = relay
        .argv
        .iter()
        .find(|a| a.ends_with("relay.toml"))
        .expect("--config");
    root.secret_file(
        relay_config,
        &format!(
            "{shipped_relay}\n[[api_keys]]\nname = \"flows\"\nkey_sha256 = \"{}\"\nsystems = [\"SIM\"]\n\n\
             [[agent_tokens]]\nname = \"plant\"\ntoken_sha256 = \"{}\"\nsystems = [\"SIM\"]\n",
            sha256(&key),
            sha256(&token)
        ),
    );
    let port = free_port().expect("port");
    let listen = ("SAPBRIDGE_LISTEN".to_owned(), format!("127.0.0.1:{port}"));
    assert!(
        relay.env.contains_key(&listen.0),
        "the relay unit sets no listen address"
    );
    let mut extra = root.path_overrides(&shipped_relay);
    extra.push(listen);
    let mut relay_proc = Proc::spawn_ready(
        root.command(&relay, &extra).stderr(root.log("relay.log")),
        "relay listening on",
        DEADLINE,
    )
    .expect("the relay unit's command starts");

    let shipped_agent = read("agent.toml");
    let agent_config = agent
        .argv
        .iter()
        .find(|a| a.ends_with("agent.toml"))
        .expect("--config");
    root.secret_file(agent_config, &shipped_agent);
    let mut extra = root.path_overrides(&shipped_agent);
    let token_file = extra
        .iter()
        .find(|(k, _)| k == "SAPBRIDGE_TOKEN_FILE")
        .map(|(_, v)| v.clone())
        .expect("the shipped agent.toml reads its token from a file");
    let token_path = token_file
        .strip_prefix(&*root.dir.path().to_string_lossy())
        .expect("under the root")
        .to_owned();
    root.secret_file(&token_path, &format!("{token}\n"));
    extra.push((
        "SAPBRIDGE_RELAY_URL".into(),
        format!("ws://127.0.0.1:{port}/v1/agent/connect"),
    ));
    let mut agent_proc = Proc::spawn(root.command(&agent, &extra).stderr(root.log("agent.log")))
        .expect("agent starts");

    let body = call_until_ok(
        &format!("http://127.0.0.1:{port}"),
        &key,
        "as installed",
        &mut [&mut relay_proc, &mut agent_proc],
    )
    .await;
    assert_eq!(body["result"]["ECHOTEXT"], "as installed");
    owned_by_service(&root, "/var/lib/sapbridge/relay.db");
    owned_by_service(&root, "/var/lib/sapbridge-agent/journal.db");
    terminate(agent_proc, "the agent");
    terminate(relay_proc, "the relay");
}

#[tokio::test]
async fn the_images_serve_a_call_as_built() {
    assert_root();
    let root = Root::new();
    let (relay, agent) = (image("relay"), image("agent"));
    for launch in [&relay, &agent] {
        // The image runs in its volume, as its numeric user.
        assert!(launch.state_dirs.contains(&launch.workdir), "{launch:?}");
        assert!(launch.user.starts_with(&root.uid.to_string()), "{launch:?}");
    }
    // `COPY --from=build … /usr/local/bin/…` and `COPY deploy/*.toml /etc/sapbridge/`.
    root.install(&format!("/usr/local/bin/{}", relay.argv[0]), RELAY_BIN);
    root.install(&format!("/usr/local/bin/{}", agent.argv[0]), AGENT_BIN);
    let shipped_relay = read("relay.toml");
    let shipped_agent = read("agent.toml");
    std::fs::create_dir_all(root.at("/etc/sapbridge")).expect("etc");
    std::fs::write(root.at("/etc/sapbridge/relay.toml"), &shipped_relay).expect("relay.toml");
    std::fs::write(root.at("/etc/sapbridge/agent.toml"), &shipped_agent).expect("agent.toml");
    root.state_dirs(&relay);
    root.state_dirs(&agent);
    // The image's ENTRYPOINT is found on the PATH: run it from the root's bin.
    let in_bin = |launch: &Launch| {
        let mut launch = launch.clone();
        launch.argv[0] = format!("/usr/local/bin/{}", launch.argv[0]);
        launch
    };

    // `docker run -e …` as the Dockerfile's header shows: keys and tokens by
    // environment (hashes only), the image's own file and ENV otherwise.
    let (key, token) = (random_secret(), random_secret());
    let port = free_port().expect("port");
    let mut extra: Vec<(String, String)> = relay
        .env
        .iter()
        .filter(|(_, v)| v.starts_with('/'))
        .map(|(k, v)| (k.clone(), root.text(v)))
        .collect();
    extra.extend([
        ("SAPBRIDGE_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        (
            "SAPBRIDGE_API_KEYS".to_owned(),
            format!(
                r#"[{{ name = "flows", key_sha256 = "{}", systems = ["SIM"] }}]"#,
                sha256(&key)
            ),
        ),
        (
            "SAPBRIDGE_AGENT_TOKENS".to_owned(),
            format!(
                r#"[{{ name = "plant", token_sha256 = "{}", systems = ["SIM"] }}]"#,
                sha256(&token)
            ),
        ),
    ]);
    assert!(relay.env.contains_key("SAPBRIDGE_LISTEN"), "{relay:?}");
    // The image's HEALTHCHECK, run as Docker runs it: in the container's
    // environment. Before the relay runs it fails; then it passes.
    let health = relay
        .healthcheck
        .clone()
        .expect("the relay image has a HEALTHCHECK");
    let mut health_launch = relay.clone();
    health_launch.argv = health;
    let health_launch = in_bin(&health_launch);
    let healthy = |root: &Root| {
        root.command(&health_launch, &extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run the health check")
            .success()
    };
    assert!(
        !healthy(&root),
        "the HEALTHCHECK passed with no relay running"
    );
    let mut relay_proc = Proc::spawn_ready(
        root.command(&in_bin(&relay), &extra)
            .stderr(root.log("relay.log")),
        "relay listening on",
        DEADLINE,
    )
    .expect("the relay image's command starts");

    let deadline = std::time::Instant::now() + DEADLINE;
    while !healthy(&root) {
        assert!(
            std::time::Instant::now() < deadline,
            "the HEALTHCHECK never passed"
        );
        assert!(relay_proc.exited().is_none(), "the relay exited");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut extra: Vec<(String, String)> = agent
        .env
        .iter()
        .filter(|(_, v)| v.starts_with('/'))
        .map(|(k, v)| (k.clone(), root.text(v)))
        .collect();
    extra.extend([
        ("SAPBRIDGE_AGENT_TOKEN".to_owned(), token.clone()),
        (
            "SAPBRIDGE_RELAY_URL".to_owned(),
            format!("ws://127.0.0.1:{port}/v1/agent/connect"),
        ),
    ]);
    let agent_launch = in_bin(&agent);
    let mut agent_proc = Proc::spawn(
        root.command(&agent_launch, &extra)
            .stderr(root.log("agent.log")),
    )
    .expect("the agent image's command starts");

    let body = call_until_ok(
        &format!("http://127.0.0.1:{port}"),
        &key,
        "as built",
        &mut [&mut relay_proc, &mut agent_proc],
    )
    .await;
    assert_eq!(body["result"]["ECHOTEXT"], "as built");
    owned_by_service(&root, "/var/lib/sapbridge/relay.db");
    owned_by_service(&root, "/var/lib/sapbridge-agent/journal.db");
    terminate(agent_proc, "the agent");
    terminate(relay_proc, "the relay");
}
