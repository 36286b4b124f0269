#!/usr/bin/env python3
"""The benchmark driver behind `bench/run`: measures every path side by side in one run.

Paths (all against the same nginx answering 100 fixed bytes):
  A direct                 load generator -> nginx
  B rathole                -> rathole server -> rathole client -> nginx
  C bore                   -> bore server -> bore local -> nginx
  D sapbridge_http         -> relay -> agent (WebSocket) -> nginx  (HTTP pass-through)
  E sapbridge_call         -> relay (SQLite queue) -> agent -> simulator STFC_CONNECTION
                              (durability = "process-crash")
  E2 sapbridge_call_power_loss  as E with durability = "power-loss"
  F sapbridge_call_memory  as E with the in-memory queue
  G sapbridge_call_pg      as E with the PostgreSQL queue (the server at --pg-url, a
                           database of its own created and dropped by the run)
  H sapbridge_call_pg2     two relay replicas on that database, an agent on each,
                           behind nginx as a round-robin load balancer

For each CPU placement (unpinned; then taskset: systems under test on CPU 0, load
generator on CPU 1) all systems are started, then every run walks the paths in order
(A..H, then H..A) and every cell (c1 c16 c64 c256 closed loop, open loop at 2000/s;
for A..D also 1 MB uploads from 4 connections).
Then: relay RSS per idle agent (N = 1000 and 5000), one agent's idle RSS, function
call latency with 100,000 calls queued for another system, and the results as
results/latest.json (report.py turns it into latest.md and latest.png).
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import load
import report
import services
from load import CELLS, UPLOAD_BYTES, UPLOAD_CELL, Request
from services import API_KEY, AGENT_TOKEN, BENCH_PATH, Processes, Stack, rss_bytes, wait_until

HERE = Path(__file__).resolve().parent

PATHS = [
    ("direct", "A"), ("rathole", "B"), ("bore", "C"),
    ("sapbridge_http", "D"), ("sapbridge_call", "E"), ("sapbridge_call_power_loss", "E2"),
    ("sapbridge_call_memory", "F"), ("sapbridge_call_pg", "G"), ("sapbridge_call_pg2", "H"),
]
# The paths whose relays keep their calls in PostgreSQL.
PG_PATHS = ["sapbridge_call_pg", "sapbridge_call_pg2"]
# The paths that carry any HTTP request, and so the upload cell.
UPLOAD_PATHS = ["direct", "rathole", "bore", "sapbridge_http"]
PLACEMENTS = {
    "unpinned": {"sut": None, "load": None,
                 "text": "unpinned: systems under test and load generator share both CPUs"},
    "pinned": {"sut": "0", "load": "1",
               "text": "taskset: systems under test on CPU 0, load generator (oha) on CPU 1"},
}
CALL_BODY = '{"REQUTEXT":"bench"}'


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def interrupted(*_):
    """Exits on the first stop signal; later ones are ignored, so they cannot cut the
    clean-up short (Ctrl-C reaches this driver and, through `bench/run`'s trap, comes
    again as SIGTERM while the processes are being stopped)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(130)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def call_request(port, system="SIM", extra=()):
    """A function call `POST /v1/systems/{system}/functions/STFC_CONNECTION`."""
    return Request(f"http://127.0.0.1:{port}/v1/systems/{system}/functions/STFC_CONNECTION",
                   "POST", [f"Authorization: Bearer {API_KEY}",
                            "Content-Type: application/json", *extra], CALL_BODY)


def check_request(request, expect):
    """Sends one request the way oha will and checks its answer contains `expect`."""
    body = request.body.encode() if request.body is not None else None
    if request.body_file is not None:
        body = Path(request.body_file).read_bytes()
    headers = dict(h.split(": ", 1) for h in request.headers)
    req = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
    with urllib.request.urlopen(req, timeout=10) as answer:
        text = answer.read().decode(errors="replace")
        if answer.status != 200 or expect not in text:
            raise RuntimeError(f"{request.url}: unexpected answer {answer.status}: {text[:300]}")


def start_stack(procs, tools, workdir, placement, args, databases):
    """Starts the systems under test of the chosen paths for one placement; returns
    (stack, requests, uploads). Each PostgreSQL path gets a database of its own,
    appended to `databases` (dropped when the run ends)."""
    stack = Stack(procs, tools, workdir, cpus=PLACEMENTS[placement]["sut"],
                  agent_concurrency=args.agent_concurrency)
    chosen = set(args.paths)
    direct = stack.start_nginx()  # the agents' pass-through target, and path A
    requests = {}
    if "direct" in chosen:
        requests["direct"] = Request(direct)
    if "rathole" in chosen:
        requests["rathole"] = Request(stack.start_rathole())
    if "bore" in chosen:
        requests["bore"] = Request(stack.start_bore())
    owners = {}  # path -> the relay/agent keys of stack.relays serving it, and its database

    if chosen & {"sapbridge_http", "sapbridge_call"}:
        port = stack.start_sapbridge("sqlite", durability="process-crash")
        owners["sapbridge_http"] = owners["sapbridge_call"] = (["sqlite"], None)
        if "sapbridge_http" in chosen:
            requests["sapbridge_http"] = Request(
                f"http://127.0.0.1:{port}/v1/systems/SIM/http{BENCH_PATH}",
                headers=[f"Authorization: Bearer {API_KEY}"])
        if "sapbridge_call" in chosen:
            requests["sapbridge_call"] = call_request(port)
    if "sapbridge_call_power_loss" in chosen:
        requests["sapbridge_call_power_loss"] = call_request(
            stack.start_sapbridge("sqlite", key="sqlite-power-loss", durability="power-loss"))
        owners["sapbridge_call_power_loss"] = (["sqlite-power-loss"], None)
    if "sapbridge_call_memory" in chosen:
        requests["sapbridge_call_memory"] = call_request(stack.start_sapbridge("memory"))
        owners["sapbridge_call_memory"] = (["memory"], None)
    for name, replicas in (("sapbridge_call_pg", 1), ("sapbridge_call_pg2", 2)):
        if name not in chosen:
            continue
        database = services.Database(tools["psql"], args.pg_url, f"{placement}_{replicas}")
        databases.append(database)
        url = database.create()
        ports = [stack.start_sapbridge("postgres", key=f"pg{replicas}-{i}", db_url=url)
                 for i in range(replicas)]
        port = ports[0] if replicas == 1 else stack.start_balancer(f"balancer-pg{replicas}", ports)
        requests[name] = call_request(port)
        owners[name] = ([f"pg{replicas}-{i}" for i in range(replicas)], database)
    stack.owners = owners
    body_file = workdir / "upload.bin"
    body_file.write_bytes(os.urandom(UPLOAD_BYTES))
    uploads = {name: requests[name].upload(body_file) for name in UPLOAD_PATHS if name in requests}
    for name, request in requests.items():
        check_request(request, "succeeded" if "call" in name else "sapbridge-bench")
    return stack, requests, uploads


def measure_placement(procs, tools, workdir, placement, args, extra, databases):
    """The chosen paths × cells × runs for one placement; returns {path: {cell: summary}}."""
    log(f"placement {placement}: starting systems under test")
    stack, requests, uploads = start_stack(procs, tools, workdir / placement, placement, args,
                                           databases)
    load_cpus = PLACEMENTS[placement]["load"]
    paths = [(name, letter) for name, letter in PATHS if name in requests]
    if placement == "unpinned" and "sqlite" in stack.relays:
        time.sleep(3)  # idle, connected, nothing run yet
        extra["agent_idle_rss_bytes"] = rss_bytes(stack.relays["sqlite"][1].pid)
        log(f"agent idle RSS {extra['agent_idle_rss_bytes'] / 2**20:.1f} MiB")
    # After the idle sample: a 1 MB body leaves the agent's buffers grown.
    for request in uploads.values():
        check_request(request, "sapbridge-bench")
    for name, request in requests.items():  # warm-up: connections, caches, JIT-free but fair
        load.run_oha(tools["oha"], request, "c16", 1, load_cpus)
    samples = {name: {cell: [] for cell in CELLS} for name, _ in paths}
    for name in uploads:
        samples[name][UPLOAD_CELL] = []
    loads = []
    for run in range(args.runs):
        order = paths if run % 2 == 0 else list(reversed(paths))
        loads.append(os.getloadavg()[0])
        log(f"placement {placement}: run {run + 1}/{args.runs}: "
            + " ".join(letter for _, letter in order))
        for name, _ in order:
            for cell in CELLS:
                procs.check_alive()
                before = cpu_ticks(stack, name, tools)
                sample = load.run_oha(tools["oha"], requests[name], cell, args.seconds, load_cpus)
                sample["cpu_us_per_call"] = cpu_per_call(before, cpu_ticks(stack, name, tools),
                                                         sample)
                samples[name][cell].append(sample)
            if name in uploads:
                procs.check_alive()
                samples[name][UPLOAD_CELL].append(load.run_oha(
                    tools["oha"], uploads[name], UPLOAD_CELL, args.seconds, load_cpus))
        done = {n: samples[n]["c64"][-1]["rps"] for n, _ in paths}
        log("  c64 rps: " + ", ".join(f"{n} {v:,.0f}" for n, v in done.items())
            + f" (load average {os.getloadavg()[0]:.1f})")
    loads.append(os.getloadavg()[0])
    extra.setdefault("loadavg", {})[placement] = [round(v, 2) for v in loads]
    if placement == "unpinned" and "sqlite" in stack.relays:
        extra["agent_rss_after_load_bytes"] = rss_bytes(stack.relays["sqlite"][1].pid)
    for name, (_, database) in stack.owners.items():
        if database is not None:  # what the finished calls of the runs take in the database
            size, calls, table = services.Database.query(
                tools["psql"], database.url(),
                "SELECT pg_database_size(current_database()), count(*), "
                "pg_total_relation_size('sapbridge_calls') FROM sapbridge_calls").split("|")
            extra.setdefault("retained", {})[f"{placement}/{name}"] = {
                "calls": int(calls), "database_bytes": int(size), "calls_table_bytes": int(table),
                "bytes_per_call": round(int(table) / max(int(calls), 1))}
    procs.stop_all()
    return {name: {cell: load.summarize(runs) for cell, runs in samples[name].items()}
            for name, _ in paths}


TICKS = os.sysconf("SC_CLK_TCK")


def process_ticks(pid):
    """CPU time (user + system, clock ticks) a process has used, or None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def cpu_ticks(stack, name, tools):
    """CPU ticks so far of what serves path `name`: its relays, agents, and (PostgreSQL
    paths) the server processes connected to its database, by pid."""
    keys, database = getattr(stack, "owners", {}).get(name, ([], None))
    out = {"relay": {}, "agent": {}, "database": {}}
    for key in keys:
        relay, agent, _ = stack.relays[key]
        out["relay"][relay.pid] = process_ticks(relay.pid)
        out["agent"][agent.pid] = process_ticks(agent.pid)
    if database is not None:
        pids = services.Database.query(tools["psql"], database.url(),
                                       "SELECT pid FROM pg_stat_activity "
                                       "WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()")
        for pid in pids.split():
            out["database"][int(pid)] = process_ticks(int(pid))
    return out


def cpu_per_call(before, after, sample):
    """CPU µs per answered call of each part (relays, agents, database backends),
    from the ticks before and after a cell; a process missing at either end is left
    out. The database's shared processes (WAL writer, checkpointer) are not in it."""
    calls = sample["rps"] * sample.get("seconds", 0)
    if not calls:
        return None
    out = {}
    for part, pids in after.items():
        used = sum(t - before[part][pid] for pid, t in pids.items()
                   if t is not None and before[part].get(pid) is not None)
        if pids:
            out[part] = round(used / TICKS * 1e6 / calls, 1)
    return out


def settled_rss(pid, max_secs=15):
    """RSS once two samples a second apart differ by less than 0.5 %."""
    last = rss_bytes(pid)
    for _ in range(max_secs):
        time.sleep(1)
        now = rss_bytes(pid)
        if abs(now - last) < 0.005 * last:
            return now
        last = now
    return last


def idle_agents(procs, tools, workdir, n, store="sqlite", db_url=None):
    """Relay RSS per connected idle agent: (RSS with N agents - RSS with none) / N."""
    stack = Stack(procs, tools, workdir / f"idle-{store}-{n}")
    relay, port = stack.start_relay(store, name="relay", db_url=db_url)
    before = settled_rss(relay.pid)
    procs.start(f"idle-agents-{n}", [tools["python"], str(HERE / "idle_agents.py"),
                                     "--url", f"ws://127.0.0.1:{port}/v1/agent/connect",
                                     "--token", AGENT_TOKEN, "-n", str(n), "--hold-secs", "300"],
                cwd=workdir)
    started = time.monotonic()
    wait_until(f"{n} idle agents", lambda: services.agents_connected(port) >= n
               or procs.check_alive(), timeout=180)
    connect_secs = time.monotonic() - started
    after = settled_rss(relay.pid)
    database_load = None
    if db_url:  # what the idle agents cost the database: its transactions per second
        def commits():
            return int(services.Database.query(tools["psql"], db_url,
                       "SELECT xact_commit FROM pg_stat_database "
                       "WHERE datname = current_database()"))
        first, t0 = commits(), time.monotonic()
        time.sleep(10)
        database_load = round((commits() - first) / (time.monotonic() - t0), 1)
        log(f"idle agents N={n} ({store}): the database commits {database_load}/s")
    procs.stop_all()
    per_agent = (after - before) / n
    log(f"idle agents N={n} ({store}): relay RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
        f"{per_agent / 1024:.1f} KiB per agent (connected in {connect_secs:.1f} s)")
    return {"n": n, "store": store, "rss_before_bytes": before, "rss_after_bytes": after,
            "per_agent_bytes": round(per_agent), "connect_secs": round(connect_secs, 1),
            "database_commits_per_sec": database_load}


def queued_cost(procs, tools, workdir, args, databases):
    """What a queued call costs each durable store: N calls (`Prefer: respond-async`,
    STFC_CONNECTION with a 20-byte parameter) queued for a system without an agent;
    the store's bytes and the relay's RSS before and after, per call."""
    out = {}
    n = args.queued
    for store in ("sqlite", "postgres"):
        stack = Stack(procs, tools, workdir / f"queued-{store}")
        db_url = None
        if store == "postgres":
            database = services.Database(tools["psql"], args.pg_url, "queued")
            databases.append(database)
            db_url = database.create()
        relay, port = stack.start_relay(store, name="relay", db_url=db_url)
        root = stack.workdir / "relay"

        def size():
            if store == "sqlite":
                return sum(f.stat().st_size for f in root.glob("relay.db*"))
            return int(database.sql("SELECT pg_database_size(current_database())", db_url))
        bytes_before, rss_before = size(), settled_rss(relay.pid)
        fill = call_request(port, "NOAGENT", ["Prefer: respond-async"])
        argv = [tools["oha"], "--no-tui", "--output-format", "json", "-n", str(n), "-c", "32",
                *fill.oha_args()]
        started = time.monotonic()
        subprocess.run(argv, capture_output=True, check=True, timeout=900)
        secs = time.monotonic() - started
        depth = services.metric(port, "sapbridge_queue_depth")
        bytes_after, rss_after = size(), settled_rss(relay.pid)
        procs.stop_all()
        out[store] = {"queued": int(depth), "enqueue_secs": round(secs, 1),
                      "bytes_before": bytes_before, "bytes_after": bytes_after,
                      "bytes_per_call": round((bytes_after - bytes_before) / max(depth, 1)),
                      "rss_before_bytes": rss_before, "rss_after_bytes": rss_after,
                      "rss_per_call_bytes": round((rss_after - rss_before) / max(depth, 1))}
        log(f"queued cost ({store}): {depth:,.0f} queued in {secs:.1f} s, "
            f"{out[store]['bytes_per_call']} bytes per call on disk, "
            f"relay RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB")
    return out


def queue_depth(procs, tools, workdir, args):
    """Function-call latency with an empty queue vs 100,000 calls queued for NOAGENT."""
    placement = PLACEMENTS["pinned"]
    stack = Stack(procs, tools, workdir / "queue-depth", cpus=placement["sut"],
                  agent_concurrency=args.agent_concurrency)
    stack.nginx_port = services.free_port()  # pass-through unused here
    relay, port = stack.start_relay("sqlite", name="relay")
    stack.start_agent(port, "agent")
    request = call_request(port)
    load.run_oha(tools["oha"], request, "c16", 1, placement["load"])

    def measure(label):
        samples = {"c1": [], "c16": []}
        for run in range(args.runs):
            for cell in (["c1", "c16"] if run % 2 == 0 else ["c16", "c1"]):
                samples[cell].append(load.run_oha(tools["oha"], request, cell, args.seconds,
                                                  placement["load"]))
        result = {cell: load.summarize(s) for cell, s in samples.items()}
        log(f"queue {label}: p50 c1 {result['c1']['p50_ms']:.3f} ms, c16 {result['c16']['p50_ms']:.3f} ms")
        return result

    empty = measure("empty")
    log(f"queue: enqueueing {args.queued:,} calls for NOAGENT (Prefer: respond-async)")
    fill = call_request(port, "NOAGENT", ["Prefer: respond-async"])
    argv = [tools["oha"], "--no-tui", "--output-format", "json", "-n", str(args.queued), "-c", "32",
            *fill.oha_args()]
    started = time.monotonic()
    subprocess.run(argv, capture_output=True, check=True, timeout=900)
    fill_secs = time.monotonic() - started
    depth = services.metric(port, "sapbridge_queue_depth")
    log(f"queue depth now {depth:,.0f} (enqueued in {fill_secs:.1f} s)")
    full = measure("with backlog")
    procs.stop_all()
    ratios = {cell: full[cell]["p50_ms"] / empty[cell]["p50_ms"] for cell in ("c1", "c16")}
    return {"queued": int(depth), "enqueue_secs": round(fill_secs, 1), "empty": empty,
            "with_backlog": full, "p50_ratio_c1": round(ratios["c1"], 3),
            "p50_ratio_c16": round(ratios["c16"], 3),
            "p50_ratio": round(max(ratios.values()), 3)}


def choose_paths(text):
    """The path names `--paths` names (names or letters; `all`, `calls`)."""
    by_letter = {letter: name for name, letter in PATHS}
    names = {name for name, _ in PATHS}
    chosen = []
    for item in text.split(","):
        item = item.strip()
        if item == "all":
            chosen += [name for name, _ in PATHS]
        elif item == "calls":
            chosen += [name for name, _ in PATHS if name.startswith("sapbridge_call")]
        elif item.upper() in by_letter:
            chosen.append(by_letter[item.upper()])
        elif item in names:
            chosen.append(item)
        else:
            raise SystemExit(f"--paths: unknown path {item!r} (names or letters of {PATHS})")
    return [name for name, _ in PATHS if name in chosen]


def pg_settings(psql, url):
    """The PostgreSQL server's version and the settings that bear on commit speed."""
    names = ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers",
             "commit_delay", "max_connections")
    done = subprocess.run([psql, "-X", "-At", "-d", url, "-c",
                           "SELECT current_setting('server_version') UNION ALL "
                           + " UNION ALL ".join(f"SELECT '{n}=' || current_setting('{n}')"
                                                for n in names)],
                          capture_output=True, text=True, timeout=30)
    lines = done.stdout.split()
    return {"version": lines[0], "settings": lines[1:]} if done.returncode == 0 and lines else None


def machine_info(note_extra):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_start": os.getloadavg()[0], "note": note_extra}


def code_info(sapbridge, agent):
    """Which code was measured: commit, uncommitted changes outside bench/, binary time
    and the sizes of the relay's and the agent's binaries."""
    def git(*argv):
        done = subprocess.run(["git", *argv], cwd=HERE, capture_output=True, text=True)
        return done.stdout.rstrip("\n") if done.returncode == 0 else ""
    changed = [line[3:] for line in git("status", "--porcelain").splitlines()
               if line[3:] != "README.md" and not line[3:].startswith("bench/")]
    built = datetime.datetime.fromtimestamp(os.path.getmtime(sapbridge), datetime.timezone.utc)
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_files": changed,
            "binary_built": built.isoformat(timespec="seconds"),
            "binary_bytes": {"sapbridge": os.path.getsize(sapbridge),
                             "sapbridge-agent": os.path.getsize(agent)}}


def main():
    parser = argparse.ArgumentParser(description="sapbridge benchmarks (run via bench/run)")
    parser.add_argument("--quick", action="store_true", help="1 run per cell, short cells")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--queued", type=int)
    parser.add_argument("--agent-concurrency", type=int, default=64)
    parser.add_argument("--placements", default="unpinned,pinned")
    parser.add_argument("--paths", default="all", help=(
        "comma-separated path names or letters (A,B,C,D,E,E2,F,G,H), or `all`; "
        "`calls` = E,E2,F,G,H"))
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the measurements besides the paths (--extras)")
    parser.add_argument("--extras", default="idle,queue-depth,queued-cost,postgres", help=(
        "which of: idle (relay RSS per idle agent), queue-depth (latency with a backlog), "
        "queued-cost (store bytes per queued call), postgres (idle agents on it too)"))
    parser.add_argument("--pg-url", default=os.environ.get(
        "SAPBRIDGE_BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test"), help=(
        "a PostgreSQL database to connect to for CREATE/DROP DATABASE (paths G, H)"))
    parser.add_argument("--name", default="latest",
                        help="results/<name>.{json,md,png} (default latest)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tool", action="append", default=[], help="name=path of a tool")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 5)
    args.seconds = args.seconds or (1.5 if args.quick else 4)
    args.queued = args.queued or (20_000 if args.quick else 100_000)
    tools = dict(t.split("=", 1) for t in args.tool)
    tools.setdefault("python", sys.executable)
    tools.setdefault("psql", shutil.which("psql") or "psql")
    args.paths = choose_paths(args.paths)

    workdir = Path(tempfile.mkdtemp(prefix="sapbridge-bench-"))
    procs = Processes(workdir)
    done = []
    databases = []

    def finish():
        procs.stop_all()
        for database in databases:
            try:
                database.drop()
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                log(f"could not drop database {database.name}: {error}")
        if done:  # queue files and logs: a few hundred MB after a full run
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"stopped early: the work dir {workdir} keeps the logs")
    atexit.register(finish)
    for sig in STOP_SIGNALS:
        signal.signal(sig, interrupted)
    started = time.monotonic()
    machine = machine_info("")
    code = code_info(tools["sapbridge"], tools["sapbridge-agent"])
    log(f"work dir {workdir}; {args.runs} run(s) per cell, {args.seconds} s per cell")

    extra = {}
    placements = {}
    for placement in args.placements.split(","):
        placements[placement] = measure_placement(procs, tools, workdir, placement, args, extra,
                                                  databases)
    extras = set() if args.no_extras else set(args.extras.split(","))
    idle = ([idle_agents(procs, tools, workdir, n) for n in (1000, 5000)]
            if "idle" in extras else [])
    if "idle" in extras and "postgres" in extras:
        database = services.Database(tools["psql"], args.pg_url, "idle")
        databases.append(database)
        extra["idle_agents_postgres"] = idle_agents(procs, tools, workdir, 1000, "postgres",
                                                    database.create())
    queue = queue_depth(procs, tools, workdir, args) if "queue-depth" in extras else None
    costs = (queued_cost(procs, tools, workdir, args, databases)
             if "queued-cost" in extras else None)

    primary = "pinned" if "pinned" in placements else next(iter(placements))
    machine["loadavg_end"] = os.getloadavg()[0]
    machine["note"] = (
        f"{os.cpu_count()} cores shared with other engineers compiling at the same time "
        f"(1-min load average {machine['loadavg_start']:.1f} at start, "
        f"{machine['loadavg_end']:.1f} at end): treat differences under ~10 % as noise.")
    result = {
        "machine": machine,
        "code": code,
        "settings": {
            "quick": args.quick, "runs_per_cell": args.runs, "seconds_per_cell": args.seconds,
            "order": "per run: " + " ".join(letter for name, letter in PATHS if name in args.paths)
                     + ", then the reverse (interleaved)",
            "postgres": pg_settings(tools["psql"], args.pg_url) if set(args.paths) & set(PG_PATHS)
                        else None,
            "closed_loop": "oha -c C, keep-alive", "open_loop": (
                f"oha -q {load.OPEN_RATE} -c {load.OPEN_CONNECTIONS} --latency-correction"),
            "rps": "2xx answers per second (median of runs; min_rps/max_rps over runs)",
            "backend": "nginx, 1 worker, fixed 100-byte answer",
            "upload_bytes": UPLOAD_BYTES,
            "upload": (f"paths A-D: POST of {UPLOAD_BYTES:,} bytes, oha -c "
                       f"{load.UPLOAD_CONNECTIONS}, keep-alive; nginx answers without "
                       "reading the body first"),
            "agent_concurrency": args.agent_concurrency,
            "runtime_workers": services.RUNTIME_WORKERS,
            "http_max_in_flight": 1024, "log": "warn",
        },
        "paths": placements[primary],
        "placement": {
            "paths": PLACEMENTS[primary]["text"],
            **{name: {"text": PLACEMENTS[name]["text"], "paths": data}
               for name, data in placements.items()},
        },
        "idle_agent_bytes": idle[0]["per_agent_bytes"] if idle else None,
        "idle_agent_bytes_n5000": idle[1]["per_agent_bytes"] if idle else None,
        "idle_agents": idle,
        "agent_idle_rss_bytes": extra.get("agent_idle_rss_bytes"),
        "agent_rss_after_load_bytes": extra.get("agent_rss_after_load_bytes"),
        "queue_depth_p50_ratio": queue["p50_ratio"] if queue else None,
        "queue_depth": queue,
        "idle_agents_postgres": extra.get("idle_agents_postgres"),
        "queued_cost": costs,
        "retained_calls": extra.get("retained"),
        "loadavg_per_run": extra.get("loadavg"),
        "elapsed_secs": round(time.monotonic() - started),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{args.name}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {target} after {result['elapsed_secs']} s")
    report.write(target)
    done.append(True)


if __name__ == "__main__":
    main()
