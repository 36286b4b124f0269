#!/usr/bin/env python3
"""The benchmark driver behind `bench/run`: measures every path side by side in one run.

Paths (all against the same nginx answering 100 fixed bytes):
  A direct                 load generator -> nginx
  B rathole                -> rathole server -> rathole client -> nginx
  C bore                   -> bore server -> bore local -> nginx
  D sapbridge_http         -> relay -> agent (WebSocket) -> nginx  (HTTP pass-through)
  E sapbridge_call         -> relay (SQLite queue) -> agent -> simulator STFC_CONNECTION
  F sapbridge_call_memory  as E with the in-memory queue

For each CPU placement (unpinned; then taskset: systems under test on CPU 0, load
generator on CPU 1) all systems are started, then every run walks the paths in order
(A..F, then F..A) and every cell (c1 c16 c64 c256 closed loop, open loop at 2000/s;
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
    ("sapbridge_http", "D"), ("sapbridge_call", "E"), ("sapbridge_call_memory", "F"),
]
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


def start_stack(procs, tools, workdir, placement, args):
    """Starts every system under test for one placement; returns (stack, requests)."""
    stack = Stack(procs, tools, workdir, cpus=PLACEMENTS[placement]["sut"],
                  agent_concurrency=args.agent_concurrency)
    requests = {"direct": Request(stack.start_nginx())}
    requests["rathole"] = Request(stack.start_rathole())
    requests["bore"] = Request(stack.start_bore())
    port = stack.start_sapbridge("sqlite")
    requests["sapbridge_http"] = Request(f"http://127.0.0.1:{port}/v1/systems/SIM/http{BENCH_PATH}",
                                         headers=[f"Authorization: Bearer {API_KEY}"])
    requests["sapbridge_call"] = call_request(port)
    requests["sapbridge_call_memory"] = call_request(stack.start_sapbridge("memory"))
    body_file = workdir / "upload.bin"
    body_file.write_bytes(os.urandom(UPLOAD_BYTES))
    uploads = {name: requests[name].upload(body_file) for name in UPLOAD_PATHS}
    for name, request in requests.items():
        check_request(request, "succeeded" if "call" in name else "sapbridge-bench")
    return stack, requests, uploads


def measure_placement(procs, tools, workdir, placement, args, extra):
    """All paths × cells × runs for one placement; returns {path: {cell: summary}}."""
    log(f"placement {placement}: starting systems under test")
    stack, requests, uploads = start_stack(procs, tools, workdir / placement, placement, args)
    load_cpus = PLACEMENTS[placement]["load"]
    if placement == "unpinned":
        time.sleep(3)  # idle, connected, nothing run yet
        extra["agent_idle_rss_bytes"] = rss_bytes(stack.relays["sqlite"][1].pid)
        log(f"agent idle RSS {extra['agent_idle_rss_bytes'] / 2**20:.1f} MiB")
    # After the idle sample: a 1 MB body leaves the agent's buffers grown.
    for request in uploads.values():
        check_request(request, "sapbridge-bench")
    for name, request in requests.items():  # warm-up: connections, caches, JIT-free but fair
        load.run_oha(tools["oha"], request, "c16", 1, load_cpus)
    samples = {name: {cell: [] for cell in CELLS} for name, _ in PATHS}
    for name in uploads:
        samples[name][UPLOAD_CELL] = []
    for run in range(args.runs):
        order = PATHS if run % 2 == 0 else list(reversed(PATHS))
        log(f"placement {placement}: run {run + 1}/{args.runs}: "
            + " ".join(letter for _, letter in order))
        for name, _ in order:
            for cell in CELLS:
                procs.check_alive()
                sample = load.run_oha(tools["oha"], requests[name], cell, args.seconds, load_cpus)
                samples[name][cell].append(sample)
            if name in uploads:
                procs.check_alive()
                samples[name][UPLOAD_CELL].append(load.run_oha(
                    tools["oha"], uploads[name], UPLOAD_CELL, args.seconds, load_cpus))
        done = {n: samples[n]["c64"][-1]["rps"] for n, _ in PATHS}
        log("  c64 rps: " + ", ".join(f"{n} {v:,.0f}" for n, v in done.items()))
    if placement == "unpinned":
        extra["agent_rss_after_load_bytes"] = rss_bytes(stack.relays["sqlite"][1].pid)
    procs.stop_all()
    return {name: {cell: load.summarize(runs) for cell, runs in samples[name].items()}
            for name, _ in PATHS}


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


def idle_agents(procs, tools, workdir, n):
    """Relay RSS per connected idle agent: (RSS with N agents - RSS with none) / N."""
    stack = Stack(procs, tools, workdir / f"idle-{n}")
    relay, port = stack.start_relay("sqlite", name="relay")
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
    procs.stop_all()
    per_agent = (after - before) / n
    log(f"idle agents N={n}: relay RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
        f"{per_agent / 1024:.1f} KiB per agent (connected in {connect_secs:.1f} s)")
    return {"n": n, "rss_before_bytes": before, "rss_after_bytes": after,
            "per_agent_bytes": round(per_agent), "connect_secs": round(connect_secs, 1)}


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
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tool", action="append", default=[], help="name=path of a tool")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 5)
    args.seconds = args.seconds or (1.5 if args.quick else 4)
    args.queued = args.queued or (20_000 if args.quick else 100_000)
    tools = dict(t.split("=", 1) for t in args.tool)
    tools.setdefault("python", sys.executable)

    workdir = Path(tempfile.mkdtemp(prefix="sapbridge-bench-"))
    procs = Processes(workdir)
    done = []

    def finish():
        procs.stop_all()
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
        placements[placement] = measure_placement(procs, tools, workdir, placement, args, extra)
    idle = [idle_agents(procs, tools, workdir, n) for n in (1000, 5000)]
    queue = queue_depth(procs, tools, workdir, args)

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
            "order": "per run: A B C D E F, then F E D C B A (interleaved)",
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
        "idle_agent_bytes": idle[0]["per_agent_bytes"],
        "idle_agent_bytes_n5000": idle[1]["per_agent_bytes"],
        "idle_agents": idle,
        "agent_idle_rss_bytes": extra.get("agent_idle_rss_bytes"),
        "agent_rss_after_load_bytes": extra.get("agent_rss_after_load_bytes"),
        "queue_depth_p50_ratio": queue["p50_ratio"],
        "queue_depth": queue,
        "elapsed_secs": round(time.monotonic() - started),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out / 'latest.json'} after {result['elapsed_secs']} s")
    report.write(out / "latest.json")
    done.append(True)


if __name__ == "__main__":
    main()
