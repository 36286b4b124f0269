"""The load generator: one `oha` run per measurement, and the statistics over runs.

Closed loop: `oha -c C -z D` (keep-alive, each connection sends its next request
when the previous answer arrived). Open loop: `oha -q RATE --latency-correction`,
so latency counts from when a request was due, not from when it was sent
(coordinated omission). Throughput counts only 2xx answers.
"""

import json
import statistics
import subprocess

# The cells of the table: closed-loop concurrencies, then the open-loop rate.
CLOSED = [1, 16, 64, 256]
OPEN_RATE = 2000
OPEN_CONNECTIONS = 64
CELLS = [f"c{c}" for c in CLOSED] + [f"open{OPEN_RATE}"]
# The upload cell, for the paths that carry any HTTP request (A-D): POSTs of
# UPLOAD_BYTES from UPLOAD_CONNECTIONS keep-alive connections. nginx answers them with
# its 100 bytes without reading the body first (it discards it), the way an SAP
# Gateway answers a POST without a CSRF token: the early-answer case of a tunnel.
UPLOAD_CELL = "upload"
UPLOAD_BYTES = 1_000_000
UPLOAD_CONNECTIONS = 4


class Request:
    """What one path sends: URL, method, headers and body."""

    def __init__(self, url, method="GET", headers=(), body=None, body_file=None):
        self.url, self.method, self.headers, self.body = url, method, list(headers), body
        self.body_file = body_file

    def upload(self, body_file):
        """The same target, POSTing the contents of `body_file`."""
        return Request(self.url, "POST", self.headers, body_file=body_file)

    def oha_args(self):
        args = ["-m", self.method]
        for header in self.headers:
            args += ["-H", header]
        if self.body is not None:
            args += ["-d", self.body]
        if self.body_file is not None:
            args += ["-D", str(self.body_file)]
        return args + [self.url]


def run_oha(oha, request, cell, seconds, cpus=None):
    """Runs one measurement of `cell` (`c64`, `open2000`, `upload`) and returns its numbers."""
    argv = [oha, "--no-tui", "--output-format", "json", "-z", f"{seconds}s"]
    if cell == UPLOAD_CELL:
        argv += ["-c", str(UPLOAD_CONNECTIONS)]
    elif cell.startswith("open"):
        argv += ["-c", str(OPEN_CONNECTIONS), "-q", cell[4:], "--latency-correction"]
    else:
        argv += ["-c", cell[1:]]
    argv += request.oha_args()
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"oha failed ({done.returncode}): {done.stderr[-1000:]}")
    report = json.loads(done.stdout)
    summary = report["summary"]
    codes = {int(k): v for k, v in (report.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    percentiles = report.get("latencyPercentiles") or {}
    seconds_total = summary.get("total") or seconds
    return {
        "rps": ok / seconds_total,
        "p50_ms": 1000 * (percentiles.get("p50") or 0.0),
        "p99_ms": 1000 * (percentiles.get("p99") or 0.0),
        "seconds": seconds_total,
        "non_2xx": sum(v for k, v in codes.items() if not 200 <= k < 300),
        # Requests still in flight when -z ends are reported as "aborted due to
        # deadline": the end of the run, not an error of the path.
        "errors": sum(v for k, v in (report.get("errorDistribution") or {}).items()
                      if "deadline" not in k),
    }


def cpu_median(samples):
    """Median over runs of each part's CPU µs per call (bench.py adds them), or None."""
    parts = {}
    for sample in samples:
        for part, value in (sample.get("cpu_us_per_call") or {}).items():
            parts.setdefault(part, []).append(value)
    return {part: round(statistics.median(v), 1) for part, v in parts.items()} or None


def summarize(samples):
    """Median and min–max over the runs of one cell."""
    if not samples:
        return None
    rps = [s["rps"] for s in samples]
    p50 = [s["p50_ms"] for s in samples]
    p99 = [s["p99_ms"] for s in samples]
    return {
        "rps": round(statistics.median(rps), 1),
        "p50_ms": round(statistics.median(p50), 4),
        "p99_ms": round(statistics.median(p99), 4),
        "min_rps": round(min(rps), 1),
        "max_rps": round(max(rps), 1),
        "p50_ms_min": round(min(p50), 4),
        "p50_ms_max": round(max(p50), 4),
        "p99_ms_min": round(min(p99), 4),
        "p99_ms_max": round(max(p99), 4),
        "runs": len(samples),
        "cpu_us_per_call": cpu_median(samples),
        "non_2xx": sum(s["non_2xx"] for s in samples),
        "errors": sum(s["errors"] for s in samples),
    }
