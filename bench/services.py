"""The systems under test: nginx (the backend), rathole, bore and sapbridge relay + agent.

Every process is started through `Processes`, in its own process group, optionally
under `taskset -c <cpus>`, logging into the run's temp dir; `Processes.stop_all()`
(called from bench.py's exit handlers) ends every group it started and nothing else.
Everything binds to 127.0.0.1 on ports the kernel picked as free.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

# The fixed answer of the backend: exactly 100 bytes.
BODY_100 = ("sapbridge-bench " * 7)[:99] + "\n"
assert len(BODY_100.encode()) == 100

# The path every HTTP path requests; the agent's pass-through allowlist allows /bench.
BENCH_PATH = "/bench/hello"

# Tokio workers of every Rust process under test: the relay (`worker_threads` in its
# file), the agent (its default), rathole and bore (`TOKIO_WORKER_THREADS`, read by
# their `#[tokio::main]` runtimes). They share 2 CPUs with nginx and the load
# generator; with one worker each, every one of them carried more than with one per
# CPU (relay + agent 14-17 %, rathole ~7 %), so all get the same setting.
RUNTIME_WORKERS = 1

API_KEY = "bench-api-key"
AGENT_TOKEN = "bench-agent-token"
NOAGENT_TOKEN = "bench-noagent-token"


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=30.0):
    """Polls `check()` until it is truthy; raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http_get(url, headers=None, timeout=2.0):
    """GET `url`; returns (status, body) and never raises for HTTP errors."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def rss_bytes(pid):
    """Resident set size of a process, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Processes:
    """Starts processes in their own process groups and stops exactly those."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.running = []

    def start(self, name, argv, cpus=None, env=None, cwd=None):
        """Starts `argv` (under `taskset -c cpus` when given); output goes to <name>.log."""
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        log = open(self.workdir / f"{name}.log", "ab")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
        process.bench_name = name
        self.running.append(process)
        return process

    def stop(self, process, grace=5.0):
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if process in self.running:
            self.running.remove(process)

    def stop_all(self):
        """Stops every process still running, newest first."""
        for process in reversed(list(self.running)):
            self.stop(process, grace=3.0)

    def check_alive(self):
        """Raises if a started process has exited."""
        for process in self.running:
            if process.poll() is not None:
                log = self.workdir / f"{process.bench_name}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{process.bench_name} exited with {process.returncode}:\n{tail}")


class Stack:
    """All systems under test for one CPU placement, started together.

    `urls` maps each path name to the URL (and request) the load generator uses.
    """

    def __init__(self, procs, tools, workdir, cpus=None, agent_concurrency=64):
        self.procs, self.tools, self.cpus = procs, tools, cpus
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.agent_concurrency = agent_concurrency
        self.relays = {}  # store kind -> (relay process, agent process, port)

    # --- backend -------------------------------------------------------------
    def start_nginx(self):
        """nginx with one worker answering 100 fixed bytes on every path."""
        self.nginx_port = free_port()
        root = self.workdir / "nginx"
        root.mkdir(exist_ok=True)
        conf = root / "nginx.conf"
        conf.write_text(f"""# bench backend: 1 worker, fixed 100-byte answer, loopback only
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {root}/body;
    server {{
        listen 127.0.0.1:{self.nginx_port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{BODY_100[:-1]}\\n";
        }}
    }}
}}
""")
        self.procs.start("nginx", [self.tools["nginx"], "-p", str(root), "-c", str(conf),
                                   "-e", str(root / "error.log")], cpus=self.cpus)
        url = f"http://127.0.0.1:{self.nginx_port}{BENCH_PATH}"
        wait_until("nginx", lambda: http_get(url)[0] == 200)
        assert len(http_get(url)[1]) == 100, "nginx must answer exactly 100 bytes"
        return url

    # --- tunnels -------------------------------------------------------------
    def start_rathole(self):
        """rathole server + client on loopback: a TCP tunnel to nginx."""
        control, public = free_port(), free_port()
        root = self.workdir / "rathole"
        root.mkdir(exist_ok=True)
        (root / "server.toml").write_text(
            f'[server]\nbind_addr = "127.0.0.1:{control}"\n\n'
            f'[server.services.web]\ntoken = "bench"\nbind_addr = "127.0.0.1:{public}"\n')
        (root / "client.toml").write_text(
            f'[client]\nremote_addr = "127.0.0.1:{control}"\n\n'
            f'[client.services.web]\ntoken = "bench"\nlocal_addr = "127.0.0.1:{self.nginx_port}"\n')
        env = {"RUST_LOG": "warn", "TOKIO_WORKER_THREADS": str(RUNTIME_WORKERS)}
        self.procs.start("rathole-server", [self.tools["rathole"], "-s", str(root / "server.toml")],
                         cpus=self.cpus, env=env)
        self.procs.start("rathole-client", [self.tools["rathole"], "-c", str(root / "client.toml")],
                         cpus=self.cpus, env=env)
        url = f"http://127.0.0.1:{public}{BENCH_PATH}"
        wait_until("rathole tunnel", lambda: http_get(url)[0] == 200)
        return url

    def start_bore(self):
        """`bore server` on loopback and `bore local` exposing nginx through it.

        bore's control port is fixed (7835) by the tool; the tunnel port is pinned to
        one free port with --min-port/--max-port.
        """
        public = free_port()
        env = {"RUST_LOG": "warn", "TOKIO_WORKER_THREADS": str(RUNTIME_WORKERS)}
        server = [self.tools["bore"], "server", "--min-port", str(public), "--max-port", str(public),
                  "--bind-addr", "127.0.0.1"]
        self.procs.start("bore-server", server, cpus=self.cpus, env=env)
        wait_until("bore control port", lambda: socket.create_connection(("127.0.0.1", 7835), 1).close() or True)
        self.procs.start("bore-local", [self.tools["bore"], "local", str(self.nginx_port),
                                        "--local-host", "127.0.0.1", "--to", "127.0.0.1",
                                        "--port", str(public)], cpus=self.cpus, env=env)
        url = f"http://127.0.0.1:{public}{BENCH_PATH}"
        wait_until("bore tunnel", lambda: http_get(url)[0] == 200)
        return url

    # --- sapbridge -------------------------------------------------------------
    def start_relay(self, store, name=None, extra_systems=True, durability=None, db_url=None):
        """A `sapbridge relay` process with the given queue store ("sqlite", "memory"
        or "postgres" on `db_url`); `durability` for sqlite (the relay's default when
        None)."""
        name = name or f"relay-{store}"
        port = free_port()
        root = self.workdir / name
        root.mkdir(exist_ok=True)
        if store == "sqlite":
            queue = f'store = "sqlite"\npath = "{root}/relay.db"\n'
            if durability:
                queue += f'durability = "{durability}"\n'
        elif store == "postgres":
            queue = f'store = "postgres"\nurl = "{db_url}"\n'
        else:
            queue = 'store = "memory"\n'
        noagent = (f'\n[[agent_tokens]]\nname = "bench-noagent"\ntoken = "{NOAGENT_TOKEN}"\n'
                   f'systems = ["NOAGENT"]\n') if extra_systems else ""
        config = root / "relay.toml"
        config.write_text(f"""# bench relay ({store} queue); written by bench/services.py
http_max_in_flight_per_agent = 1024
worker_threads = {RUNTIME_WORKERS}
# the idle-agent measurement connects 5,000 agents; c=256 needs 256 client connections
max_agent_connections = 6000
max_connections = 1024

[[api_keys]]
name = "bench"
key = "{API_KEY}"
systems = ["*"]

[[agent_tokens]]
name = "bench-agent"
token = "{AGENT_TOKEN}"
systems = ["SIM"]
{noagent}
[queue]
{queue}""")
        relay = self.procs.start(name, [self.tools["sapbridge"], "--log", "warn", "relay",
                                        "--config", str(config), "--listen", f"127.0.0.1:{port}"],
                                 cpus=self.cpus, cwd=root)
        wait_until(f"{name} healthz", lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200)
        return relay, port

    def start_agent(self, relay_port, name):
        """A `sapbridge-agent` (the agent-only binary an on-premises host installs) serving
        SIM (simulator, no latency) with pass-through to nginx."""
        root = self.workdir / name
        root.mkdir(exist_ok=True)
        config = root / "agent.toml"
        config.write_text(f"""# bench agent; written by bench/services.py
relay_url = "ws://127.0.0.1:{relay_port}/v1/agent/connect"
token = "{AGENT_TOKEN}"
agent_id = "{name}"
concurrency = {self.agent_concurrency}
worker_threads = {RUNTIME_WORKERS}
data_dir = "{root}/data"

[[systems]]
name = "SIM"
allow_functions = ["STFC_CONNECTION"]

[systems.backend]
type = "sim"
latency_ms = 0
fault_rate = 0.0

[systems.http]
base_url = "http://127.0.0.1:{self.nginx_port}/"
allow_paths = ["/bench"]
max_in_flight = 1024
""")
        agent = self.procs.start(name, [self.tools["sapbridge-agent"], "--log", "warn",
                                        "--config", str(config)], cpus=self.cpus, cwd=root)
        wait_until(f"{name} connected", lambda: agents_connected(relay_port) >= 1)
        return agent

    def start_sapbridge(self, store, key=None, **relay_args):
        """Relay (given store) + agent as two processes; returns the relay port.
        `key` names the pair (several pairs of one store kind); `relay_args` go to
        `start_relay`."""
        key = key or store
        relay, port = self.start_relay(store, name=f"relay-{key}", **relay_args)
        agent = self.start_agent(port, f"agent-{key}")
        self.relays[key] = (relay, agent, port)
        return port

    def start_balancer(self, name, ports):
        """nginx as a round-robin load balancer (keep-alive to the upstreams) in front
        of the relays on `ports`, as a cloud load balancer stands in front of
        replicas; returns its port."""
        port = free_port()
        root = self.workdir / name
        root.mkdir(exist_ok=True)
        servers = "".join(f"        server 127.0.0.1:{p};\n" for p in ports)
        conf = root / "nginx.conf"
        conf.write_text(f"""# bench load balancer: 1 worker, round robin, keep-alive upstreams
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    upstream relays {{
{servers}        keepalive 512;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://relays;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
""")
        self.procs.start(name, [self.tools["nginx"], "-p", str(root), "-c", str(conf),
                                "-e", str(root / "error.log")], cpus=self.cpus)
        wait_until(name, lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200)
        return port


class Database:
    """A PostgreSQL database of its own for one part of a bench run: created on the
    server at `admin_url` (a database there to connect to, e.g. `test`) and dropped
    at the end (`DROP DATABASE ... WITH (FORCE)`: relays still connected are cut)."""

    def __init__(self, psql, admin_url, label):
        self.psql, self.admin_url = psql, admin_url
        self.name = f"sapbridge_bench_{os.getpid()}_{label}"
        self.created = False

    @staticmethod
    def query(psql, database_url, statement):
        """Runs one statement with psql; returns its output (unaligned, no header)."""
        done = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                               "-d", database_url, "-c", statement],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {done.stderr.strip()}")
        return done.stdout.strip()

    def sql(self, statement, database_url=None):
        return self.query(self.psql, database_url or self.admin_url, statement)

    def create(self):
        self.sql(f'CREATE DATABASE "{self.name}"')
        self.created = True
        return self.url()

    def url(self):
        """The admin URL with this database's name in its path."""
        url, mark, query = self.admin_url.partition("?")
        base, _, _ = url.rpartition("/")
        return f"{base}/{self.name}{mark}{query}"

    def drop(self):
        if self.created:
            self.sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


def agents_connected(relay_port):
    """`sapbridge_agents_connected` from the relay's /metrics."""
    return metric(relay_port, "sapbridge_agents_connected")


def metric(relay_port, name):
    """One unlabelled gauge from the relay's /metrics (0 when absent)."""
    status, body = http_get(f"http://127.0.0.1:{relay_port}/metrics")
    if status != 200:
        return 0
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0
