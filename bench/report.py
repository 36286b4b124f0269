#!/usr/bin/env python3
"""Turns bench/results/latest.json into latest.md (tables + targets) and latest.png (chart).

    report.py results/latest.json

Runs by itself too, so the table and chart can be redrawn without measuring again.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from load import CELLS, UPLOAD_CELL  # noqa: E402

PATHS = [
    ("direct", "A direct"), ("rathole", "B rathole"), ("bore", "C bore"),
    ("sapbridge_http", "D sapbridge HTTP pass-through"),
    ("sapbridge_call", "E sapbridge call (SQLite queue, process-crash)"),
    ("sapbridge_call_power_loss", "E2 sapbridge call (SQLite queue, power-loss)"),
    ("sapbridge_call_memory", "E' sapbridge call (memory queue)"),
    ("sapbridge_call_pg", "G sapbridge call (PostgreSQL, 1 replica)"),
    ("sapbridge_call_pg2", "H sapbridge call (PostgreSQL, 2 replicas behind nginx)"),
]
KIB, MIB = 1024, 1024 * 1024


def targets(paths, result):
    """[(target, measured, met?)] for one placement's paths (those it measured)."""
    rows = []
    d, r, e = paths.get("sapbridge_http"), paths.get("rathole"), paths.get("sapbridge_call")
    if d and r:
        rows += [
        ("D ≥ 1.0× rathole rps at c=64, p99 ≤ rathole's",
         f"{d['c64']['rps']:,.0f} vs {r['c64']['rps']:,.0f} rps "
         f"({d['c64']['rps'] / r['c64']['rps']:.2f}×); p99 {d['c64']['p99_ms']:.3f} vs "
         f"{r['c64']['p99_ms']:.3f} ms",
         d["c64"]["rps"] >= r["c64"]["rps"] and d["c64"]["p99_ms"] <= r["c64"]["p99_ms"]),
        ("D c=1 p50 ≤ rathole p50 + 50 µs",
         f"{d['c1']['p50_ms'] * 1000:.0f} µs vs {r['c1']['p50_ms'] * 1000:.0f} + 50 µs",
         d["c1"]["p50_ms"] <= r["c1"]["p50_ms"] + 0.050),
        ]
    if e:
        rows.append(("E (durable) ≥ 20,000 calls/s at c=64", f"{e['c64']['rps']:,.0f} calls/s",
                     e["c64"]["rps"] >= 20_000))
    e2 = paths.get("sapbridge_call_power_loss")
    if e and e2:
        cost = 1 - e2["c64"]["rps"] / e["c64"]["rps"]
        rows.append(("E2 power-loss costs < 10 % of E's calls/s at c=64 (then it is the default)",
                     f"{e2['c64']['rps']:,.0f} vs {e['c64']['rps']:,.0f} calls/s "
                     f"({cost * 100:+.1f} % cost); p50 c=1 {e2['c1']['p50_ms']:.3f} vs "
                     f"{e['c1']['p50_ms']:.3f} ms", cost < 0.10))
    for key, name in (("sapbridge_call_pg", "G"), ("sapbridge_call_pg2", "H")):
        g = paths.get(key)
        if not g:
            continue
        rows.append((f"{name} (PostgreSQL, durable) ≥ 10,000 calls/s at c=64",
                     f"{g['c64']['rps']:,.0f} calls/s", g["c64"]["rps"] >= 10_000))
        for sqlite, which in ((e, "E, process-crash"), (e2, "E2, power-loss like PostgreSQL's")):
            if sqlite:
                rows.append((f"{name} p50 at c=1 ≤ 2× SQLite's ({which})",
                             f"{g['c1']['p50_ms']:.3f} vs {sqlite['c1']['p50_ms']:.3f} ms "
                             f"(×{g['c1']['p50_ms'] / sqlite['c1']['p50_ms']:.2f})",
                             g["c1"]["p50_ms"] <= 2 * sqlite["c1"]["p50_ms"]))
    return rows


def global_targets(result):
    if not result.get("idle_agents") or not result.get("queue_depth"):
        return []  # a run without the extras (--no-extras)
    idle1, idle5 = result["idle_agent_bytes"], result["idle_agent_bytes_n5000"]
    agent = result.get("agent_idle_rss_bytes")
    q = result["queue_depth"]
    return [
        ("relay per idle agent ≤ 16 KiB",
         f"{idle1 / KIB:.1f} KiB (N=1000), {idle5 / KIB:.1f} KiB (N=5000)",
         max(idle1, idle5) <= 16 * KIB),
        ("agent idle RSS ≤ 10 MiB",
         f"{agent / MIB:.1f} MiB" if agent else "not measured", bool(agent) and agent <= 10 * MIB),
        ("queue-depth p50 within 10 %",
         f"×{q['p50_ratio_c1']:.2f} (c=1), ×{q['p50_ratio_c16']:.2f} (c=16) "
         f"with {q['queued']:,} queued", q["p50_ratio"] <= 1.10),
    ]


def cell_text(cell):
    if not cell:
        return "–"
    text = (f"{cell['rps']:,.0f} ({cell['min_rps']:,.0f}–{cell['max_rps']:,.0f}) / "
            f"{cell['p50_ms']:.3f} / {cell['p99_ms']:.3f}")
    return text + warning(cell)


def warning(cell):
    """What went wrong in a cell's runs, or nothing."""
    if cell.get("non_2xx") or cell.get("errors"):
        return f" ⚠ {cell['non_2xx']} non-2xx, {cell['errors']} errors"
    return ""


def code_line(code):
    if not code:
        return []
    dirty = (f" plus uncommitted changes to {len(code['uncommitted_files'])} file(s)"
             if code["uncommitted_files"] else "")
    sizes = code.get("binary_bytes")
    sizes = ("; binary files (with line tables) `sapbridge` {:.1f} MiB, `sapbridge-agent` {:.1f} MiB".format(
        sizes["sapbridge"] / MIB, sizes["sapbridge-agent"] / MIB) if sizes else "")
    return [f"- code: commit {code['commit']}{dirty}; binary built {code['binary_built']}{sizes}"]


def cpu_table(paths):
    """CPU µs per answered call of each part, in the c=1 and c=64 cells (median over
    runs), for the paths that recorded it."""
    rows = [(label, paths[key]) for key, label in PATHS
            if any(((paths.get(key) or {}).get(c) or {}).get("cpu_us_per_call")
                   for c in ("c1", "c64"))]
    if not rows:
        return []
    out = ["CPU per answered call, µs (from /proc: user + system time of the relays, the "
           "agents and the PostgreSQL server processes connected to the path's database, "
           "during the cell; not the server's WAL writer and checkpointer):", "",
           "| path | c1 relay / agent / database | c64 relay / agent / database |",
           "|---|---|---|"]
    for label, cells in rows:
        def text(cell):
            cpu = (cells.get(cell) or {}).get("cpu_us_per_call") or {}
            return " / ".join(f"{cpu[k]:.0f}" if k in cpu else "–"
                              for k in ("relay", "agent", "database"))
        out.append(f"| {label} | {text('c1')} | {text('c64')} |")
    return out + [""]


def upload_table(paths, settings):
    """The upload cell of one placement (no target; paths A-D), or nothing for runs
    without it."""
    rows = [(label, paths[key][UPLOAD_CELL]) for key, label in PATHS
            if (paths.get(key) or {}).get(UPLOAD_CELL)]
    if not rows:
        return []
    rathole = (paths.get("rathole") or {}).get(UPLOAD_CELL)
    megabytes = settings["upload_bytes"] / 1e6
    out = [f"Uploads: {settings['upload']}.", "",
           "| path | uploads/s (min–max) | MB/s | p50 ms | p99 ms | vs rathole |",
           "|---|---|---|---|---|---|"]
    for label, cell in rows:
        ratio = f"{cell['rps'] / rathole['rps']:.2f}×" if rathole and rathole["rps"] else "–"
        out.append(f"| {label} | {cell['rps']:,.0f} ({cell['min_rps']:,.0f}–{cell['max_rps']:,.0f}){warning(cell)} "
                   f"| {cell['rps'] * megabytes:,.0f} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} "
                   f"| {ratio} |")
    return out + [""]


def markdown(result, stem="latest"):
    m, s = result["machine"], result["settings"]
    loads = result.get("loadavg_per_run") or {}
    pg = s.get("postgres")
    out = [
        "# sapbridge benchmarks — latest run", "",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, {m['date']}",
        f"- note: {m['note']}",
        *([f"- 1-min load average at the start of each run and at the end: "
           + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in loads.items())]
          if loads else []),
        *([f"- PostgreSQL {pg['version']} on the same machine (shared with the other "
           f"engineers' tests, never pinned), {', '.join(pg['settings'])}; a database of "
           "its own per path and placement, created and dropped by the run"] if pg else []),
        *code_line(result.get("code")),
        f"- {s['runs_per_cell']} run(s) per cell of {s['seconds_per_cell']} s, {s['order']}; "
        f"closed loop `{s['closed_loop']}`, open loop `{s['open_loop']}`; backend {s['backend']}; "
        f"agent concurrency {s['agent_concurrency']}; "
        f"{s.get('runtime_workers', 'default')} tokio worker(s) per process under test "
        "(relay and agent `worker_threads`, rathole and bore `TOKIO_WORKER_THREADS`), "
        f"pass-through in-flight limit "
        f"{s['http_max_in_flight']}, logs at {s['log']}" + (" (**--quick**)" if s["quick"] else ""),
        f"- took {result['elapsed_secs'] // 60} min {result['elapsed_secs'] % 60} s", "",
        "Each cell: **rps median (min–max over runs) / p50 ms / p99 ms** (medians over runs).", "",
    ]
    placements = [(k, v) for k, v in result["placement"].items() if isinstance(v, dict)]
    for name, placement in placements:
        out += [f"## {placement['text']}", "",
                "| path | " + " | ".join(CELLS) + " |", "|---|" + "---|" * len(CELLS)]
        for key, label in PATHS:
            cells = placement["paths"].get(key)
            if not cells:
                continue
            out.append(f"| {label} | " + " | ".join(cell_text(cells.get(c)) for c in CELLS) + " |")
        out.append("")
        out += cpu_table(placement["paths"])
        out += upload_table(placement["paths"], s)
    out += ["## Targets", "", "| target | placement | measured | target: met / not met |",
            "|---|---|---|---|"]
    for name, placement in placements:
        for target, measured, met in targets(placement["paths"], result):
            out.append(f"| {target} | {name} | {measured} | {'met' if met else '**not met**'} |")
    for target, measured, met in global_targets(result):
        out.append(f"| {target} | – | {measured} | {'met' if met else '**not met**'} |")
    q = result["queue_depth"]
    out += ["", "## Idle agents, agent memory, queue depth, queued calls", "",
            "| measure | value |", "|---|---|"]
    pg_idle = result.get("idle_agents_postgres")
    if pg_idle:
        out.append(f"| relay RSS, {pg_idle['n']:,} idle agents, PostgreSQL store | "
                   f"{pg_idle['rss_before_bytes'] / MIB:.1f} → {pg_idle['rss_after_bytes'] / MIB:.1f} "
                   f"MiB = {pg_idle['per_agent_bytes'] / KIB:.1f} KiB per agent (connected in "
                   f"{pg_idle['connect_secs']} s); the database then commits "
                   f"{pg_idle.get('database_commits_per_sec')} transactions/s |")
    for store, cost in (result.get("queued_cost") or {}).items():
        out.append(f"| {cost['queued']:,} calls queued (respond-async, no agent), {store} | "
                   f"store {cost['bytes_before'] / MIB:.1f} → {cost['bytes_after'] / MIB:.1f} MiB = "
                   f"{cost['bytes_per_call']:,} bytes per call; relay RSS "
                   f"{cost['rss_before_bytes'] / MIB:.1f} → {cost['rss_after_bytes'] / MIB:.1f} MiB; "
                   f"enqueued in {cost['enqueue_secs']} s at c=32 |")
    for where, kept in (result.get("retained_calls") or {}).items():
        out.append(f"| finished calls kept after the runs, {where} | {kept['calls']:,} calls: "
                   f"`sapbridge_calls` {kept['calls_table_bytes'] / MIB:.1f} MiB with its indexes = "
                   f"{kept['bytes_per_call']:,} bytes per call (database "
                   f"{kept['database_bytes'] / MIB:.1f} MiB) |")
    for idle in result["idle_agents"] or []:
        out.append(f"| relay RSS, {idle['n']:,} idle agents, SQLite store | {idle['rss_before_bytes'] / MIB:.1f} → "
                   f"{idle['rss_after_bytes'] / MIB:.1f} MiB = {idle['per_agent_bytes'] / KIB:.1f} KiB "
                   f"per agent (connected in {idle['connect_secs']} s) |")
    if result.get("agent_idle_rss_bytes"):
        out.append(f"| agent RSS idle (connected, after one check request per path, before the load runs) | "
                   f"{result['agent_idle_rss_bytes'] / MIB:.1f} MiB |")
    if result.get("agent_rss_after_load_bytes"):
        out.append(f"| agent RSS after the unpinned runs | "
                   f"{result['agent_rss_after_load_bytes'] / MIB:.1f} MiB |")
    for cell in ("c1", "c16") if q else ():
        out.append(f"| E p50 {cell}, empty queue → {q['queued']:,} queued for another system "
                   f"(pinned) | {q['empty'][cell]['p50_ms']:.3f} → "
                   f"{q['with_backlog'][cell]['p50_ms']:.3f} ms (×{q[f'p50_ratio_{cell}']:.2f}) |")
    out += ["", f"![throughput and p99 per path and concurrency]({stem}.png)", ""]
    return "\n".join(out)


def chart(result, path):
    """Throughput (top) and p99 (bottom) per path and cell, one column per placement."""
    placements = [(k, v) for k, v in result["placement"].items() if isinstance(v, dict)]
    fig, axes = plt.subplots(2, len(placements), figsize=(max(7.5 * len(placements), 11), 9.5),
                             squeeze=False)
    colors = dict(zip([k for k, _ in PATHS], ["#4c4c4c", "#1f77b4", "#9467bd", "#d62728",
                                                 "#2ca02c", "#17becf", "#98df8a", "#ff7f0e",
                                                 "#8c564b"]))
    measured = [(k, label) for k, label in PATHS
                if any(p["paths"].get(k) for _, p in placements)]
    width = 0.8 / len(measured)
    for col, (name, placement) in enumerate(placements):
        for row, (metric, ylabel) in enumerate([("rps", "requests/s (2xx), median"),
                                                ("p99_ms", "p99 latency, ms (log)")]):
            ax = axes[row][col]
            for i, (key, label) in enumerate(measured):
                cells = placement["paths"].get(key, {})
                values = [(cells.get(c) or {}).get(metric, 0) for c in CELLS]
                xs = [x + (i - len(measured) / 2 + 0.5) * width for x in range(len(CELLS))]
                ax.bar(xs, values, width, label=label, color=colors[key])
                if metric == "rps":
                    lo = [v - (cells.get(c) or {}).get("min_rps", v) for c, v in zip(CELLS, values)]
                    hi = [(cells.get(c) or {}).get("max_rps", v) - v for c, v in zip(CELLS, values)]
                    ax.errorbar(xs, values, yerr=[lo, hi], fmt="none", ecolor="black",
                                elinewidth=0.8, capsize=1.5)
            ax.set_xticks(range(len(CELLS)), CELLS)
            ax.set_ylabel(ylabel)
            if metric == "p99_ms":
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(("throughput" if metric == "rps" else "p99 latency")
                         + f" — {name}", fontsize=11)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    m = result["machine"]
    tunnels = any(k in p["paths"] for _, p in placements for k in ("rathole", "bore"))
    what = ("sapbridge vs rathole vs bore, 100-byte nginx answer" if tunnels
            else "sapbridge function calls by queue store")
    fig.suptitle(f"{what} — {m['cores']} cores (shared), {m['date'][:10]}", fontsize=12)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)


def write(source):
    """Writes latest.md and latest.png next to the JSON file `source`."""
    source = Path(source)
    result = json.loads(source.read_text())
    stem = source.stem
    (source.parent / f"{stem}.md").write_text(markdown(result, stem))
    chart(result, source.parent / f"{stem}.png")
    print(f"wrote {source.parent / stem}.md and .png", file=sys.stderr)


def main():
    write(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results/latest.json")


if __name__ == "__main__":
    main()
