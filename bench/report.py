#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# bench/report.py: turns bench/run.sh's raw runs (one JSON object per line) and
# machine facts into the results JSON and one Markdown table: per workload and
# terminator the median with min..max over rounds, the terminator's CPU cost, and
# the ratios to `plain` and to `stunnel`. Usage: report.py META.json RAW.jsonl OUT.json
import json
import statistics
import sys

# workload -> (title, value key, value label, cost label)
WORKLOADS = {
    "W1": ("steady, pgbench -S -c 16", "tps", "TPS", "CPU-us/txn"),
    "W2": ("connection storm, pgbench -S -C -c 4", "tps", "TPS (conn/s)", "CPU-us/txn"),
    "W3": ("bulk COPY TO STDOUT", "mb_s", "MB/s", "CPU-s/GB"),
    "W4": ("idle TLS sessions", "delta_per_conn_kb", "KiB/conn (RSS(N)-RSS(0))/N", "setup CPU-us/conn"),
    "W5": ("scale, pgbench -S -c W5_CONNS", "tps", "TPS", "CPU-us/txn"),
}


def cost(run):
    """The terminator's CPU cost of one run, or None."""
    w = run["workload"].split("-")[0]
    if w == "W4":
        return run["setup_cpu_us_per_conn"]
    # W1/W5: CPU after pgbench's initial connections (see run_pgbench); W2, W3: all of it
    key = "term_cpu_run_s" if w != "W3" and run.get("term_cpu_run_s") is not None else "term_cpu_s"
    return unit_cost(run, key)


def unit_cost(run, key):
    """CPU seconds in run[key] per the workload's unit (W1/W2/W5 us per transaction,
    W3 s per GB), or None."""
    w = run["workload"].split("-")[0]
    cpu = run.get(key)
    if cpu is None:
        return None
    if w in ("W1", "W2", "W5"):
        return cpu / run["txns"] * 1e6 if run.get("txns") else None
    if w == "W3":
        return cpu / (run["bytes"] / 1e9)
    return None


# The machine's CPU per unit, split by process (W1, W2, W3, W5): "rest" is PostgreSQL,
# the kernel's softirq work and everything else; steal is not in "machine".
SPLIT = ("machine_cpu_s", "client_cpu_s", "term_cpu_s", "pgbouncer_cpu_s", "steal_s")


def engine_counter(run, key):
    """Sum of a per-worker engine counter (show workers: enters, completions), or None."""
    ws = (run.get("sidecar_stats") or {}).get("workers") or []
    vals = [w.get(key) for w in ws if isinstance(w, dict) and w.get(key) is not None]
    return sum(vals) if vals else None


def per_txn(run, key):
    """Engine counter per transaction: the sidecar's whole life, its handshakes included."""
    n = engine_counter(run, key)
    return n / run["txns"] if n is not None and run.get("txns") else None


def per_enter(run):
    e, c = engine_counter(run, "enters"), engine_counter(run, "completions")
    return c / e if e and c is not None else None


def sqpoll_share(run):
    """The SQPOLL threads' part of the terminator's CPU (None when it has none)."""
    sq, cpu = run.get("sqpoll_cpu_s"), run.get("term_cpu_s")
    return sq / cpu if sq and cpu else None


def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or not b["median"]:
        return None
    return a["median"] / b["median"]


def print_split(summary):
    print()
    print("Where the machine's CPU goes, per unit of the workload (medians; W1/W2/W5 CPU-us per "
          "transaction, W3 CPU-s per GB):")
    print()
    print("| workload | terminator | machine | client | terminator | PgBouncer | rest | steal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in summary:
        sp = s.get("cpu_split")
        if not sp or not sp.get("machine_cpu_s"):
            continue
        med = {k: (sp[k]["median"] if sp.get(k) else None) for k in SPLIT}
        term = med["term_cpu_s"] if s["terminator"] != "plain" else None  # plain's is PgBouncer
        parts = (med["client_cpu_s"], med["pgbouncer_cpu_s"], term)
        rest = med["machine_cpu_s"] - sum(p for p in parts if p is not None)
        print(f"| {s['workload']} | {s['terminator']} | {fmt(med['machine_cpu_s'])} | {fmt(med['client_cpu_s'])} | "
              f"{fmt(term)} | {fmt(med['pgbouncer_cpu_s'])} | {fmt(rest)} | {fmt(med['steal_s'])} |")


def main():
    meta = json.load(open(sys.argv[1]))
    runs = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
    out_path = sys.argv[3]

    order_t = []
    order_w = []
    for r in runs:
        if r["terminator"] not in order_t:
            order_t.append(r["terminator"])
        if r["workload"] not in order_w:
            order_w.append(r["workload"])
    order_w.sort(key=lambda w: (w.split("-")[0], int(w.split("-")[1]) if "-" in w else 0))

    summary = []
    cells = {}
    for w in order_w:
        base = w.split("-")[0]
        _, key, unit, cost_unit = WORKLOADS[base]
        for t in order_t:
            mine = [r for r in runs if r["workload"] == w and r["terminator"] == t]
            good = [r for r in mine if r["ok"]]
            if not mine:
                continue
            s = {
                "workload": w, "terminator": t, "unit": unit, "cost_unit": cost_unit,
                "runs": len(mine), "failed": len(mine) - len(good),
                "value": spread([r[key] for r in good]),
                "cost": spread([cost(r) for r in good]),
                "pgbouncer_cpu_s": spread([r.get("pgbouncer_cpu_s") for r in good]),
                "machine_busy_pct": spread([r.get("machine_busy_pct") for r in good]),
                "errors": sorted({r["error"] for r in mine if not r["ok"]}),
            }
            if base in ("W1", "W5"):
                s["latency_ms"] = spread([r.get("latency_ms") for r in good])
            if base in ("W1", "W2", "W5"):
                s["enters_per_txn"] = spread([per_txn(r, "enters") for r in good])
                s["completions_per_enter"] = spread([per_enter(r) for r in good])
            s["sqpoll_cpu_share"] = spread([sqpoll_share(r) for r in good])
            s["steal_pct"] = spread([r.get("steal_pct") for r in good])
            s["attempts"] = sum(r.get("attempts", 1) for r in good)
            if base == "W3":
                # the terminator's user-space CPU (utime) during the COPY alone: with kTLS
                # the crypto is the kernel's, and with splice user space does not touch the bytes
                s["user_cost"] = spread([unit_cost(r, "term_user_copy_s") for r in good])
            if base != "W4":
                s["cpu_split"] = {k: spread([unit_cost(r, k) for r in good]) for k in SPLIT}
            if base == "W4":
                s["rss_per_conn_kb"] = spread([r["rss_per_conn_kb"] for r in good])
                s["pgbouncer_delta_per_conn_kb"] = spread([r["pgbouncer_delta_per_conn_kb"] for r in good])
                s["open_s"] = spread([r["open_s"] for r in good])
            if base == "W5":
                # TPS(W5)/TPS(W1) of the same terminator in the same round
                w1 = {r["round"]: r["tps"] for r in runs
                      if r["workload"] == "W1" and r["terminator"] == t and r["ok"]}
                s["tps_ratio_w5_w1"] = spread([r["tps"] / w1[r["round"]] for r in good if r["round"] in w1])
            summary.append(s)
            cells[(w, t)] = s
    for s in summary:
        # a -unix terminator (upstream over PgBouncer's unix socket) is set against stunnel
        # doing the same, when that ran
        peer = "stunnel"
        if "unix" in s["terminator"].split("-") and (s["workload"], "stunnel-unix") in cells:
            peer = "stunnel-unix"
        s["stunnel_peer"] = peer
        s["value_vs_plain"] = ratio(s["value"], cells.get((s["workload"], "plain"), {}).get("value"))
        s["value_vs_stunnel"] = ratio(s["value"], cells.get((s["workload"], peer), {}).get("value"))
        s["cost_vs_stunnel"] = ratio(s["cost"], cells.get((s["workload"], peer), {}).get("cost"))

    result = dict(meta)
    result["summary"] = summary
    result["runs"] = runs
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    m = meta["machine"]
    c = meta["config"]
    print()
    print(f"Machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, {m['openssl']}; "
          f"{m['ktls']}; {m['io_uring']}{'; inside the TCG VM' if meta['in_vm'] else ''}")
    print(f"Config: {c['rounds']} round(s), pgbench -T {c['duration_s']}, W3 {c['bulk_rows']} rows, "
          f"W4 N={c['w4_conns']}, W5 {c['w5_conns']} clients, cert {c['cert']}, "
          f"suite {c['ciphersuite']}, sidecar workers {c['sidecar_workers'] or 'nproc'}"
          + (f", runs with over {c['steal_max_pct']}% steal repeated up to {c['steal_retries']} times"
             if "steal_max_pct" in c else ""))
    loads = spread([r.get("loadavg1_before") for r in runs if r.get("ok")])
    if loads:
        print(f"Load average (1 min) before each run: {fmt(loads['min'])}..{fmt(loads['max'])}, "
              f"median {fmt(loads['median'])} (above {m['nproc']}: other work shared the CPUs)")
    if meta.get("not_run"):
        print("Not run: " + "; ".join(f"{k} ({v})" for k, v in meta["not_run"].items()))
    print()
    print("| workload | terminator | value | min..max | CPU cost | x plain | x stunnel | note |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for s in summary:
        base = s["workload"].split("-")[0]
        w = s["workload"] if base != "W4" else f"W4 N={s['workload'].split('-')[1]}"
        v, cst = s["value"], s["cost"]
        notes = []
        if base in ("W1", "W5") and s.get("latency_ms"):
            notes.append(f"lat {fmt(s['latency_ms']['median'])} ms")
        if s.get("enters_per_txn"):
            e = s["enters_per_txn"]
            notes.append(f"enters/txn {e['median']:.2f}" + (f" ({e['min']:.2f}..{e['max']:.2f})" if e["n"] > 1 else ""))
        if s.get("sqpoll_cpu_share"):
            notes.append(f"SQ thread {100 * s['sqpoll_cpu_share']['median']:.0f}% of CPU")
        if base == "W3" and s.get("user_cost") and s["terminator"] != "plain":
            notes.append(f"user space {s['user_cost']['median']:.3f} CPU-s/GB")
        if base == "W4" and s.get("rss_per_conn_kb"):
            notes.append(f"RSS/N {fmt(s['rss_per_conn_kb']['median'])} KiB")
        if base == "W5" and s.get("tps_ratio_w5_w1"):
            notes.append(f"TPS({c['w5_conns']})/TPS(16) {s['tps_ratio_w5_w1']['median']:.2f}")
        if s["terminator"] == "plain":
            notes.append("no TLS; CPU is PgBouncer's")
        st = s.get("steal_pct")
        if st and st["max"] >= 5:
            notes.append(f"steal {st['median']:.0f}% (max {st['max']:.0f}%)")
        if s.get("attempts", 0) > s["runs"] - s["failed"]:
            notes.append(f"{s['attempts'] - (s['runs'] - s['failed'])} run(s) repeated for steal")
        if s["stunnel_peer"] != "stunnel":
            notes.append(f"x {s['stunnel_peer']}")
        if s["failed"]:
            notes.append(f"{s['failed']}/{s['runs']} runs FAILED")
        unit = s["unit"] if base != "W4" else "KiB/conn"
        print(f"| {w} | {s['terminator']} | "
              f"{fmt(v['median']) + ' ' + unit if v else 'FAILED'} | "
              f"{(fmt(v['min']) + '..' + fmt(v['max'])) if v and v['n'] > 1 else '-'} | "
              f"{fmt(cst['median']) + ' ' + s['cost_unit'] if cst else '-'} | "
              f"{fmt(s['value_vs_plain']) if base != 'W4' else '-'} | {fmt(s['value_vs_stunnel'])} | "
              f"{'; '.join(notes)} |")
    if any((s.get("cpu_split") or {}).get("machine_cpu_s") for s in summary):
        print_split(summary)
    print()
    print("value: W1/W2/W5 TPS, W3 MB/s (higher is better); W4 (RSS(N)-RSS(0))/N of the terminator "
          "(lower is better). x plain / x stunnel: value / the same workload's value for plain / stunnel "
          "(no x plain for W4: plain's value is PgBouncer's own memory).")
    print("CPU cost: the terminator's utime+stime per transaction (W1, W2, W5), per GB (W3), or per "
          "connection set up (W4); for pgbouncer-tls it is PgBouncer's own, for plain PgBouncer's "
          "(for reference).")
    print("enters/txn: the sidecar's io_uring_enter (uring) or epoll_wait (epoll) calls per transaction, "
          "from show workers over the terminator's whole life (its handshakes included); with SQPOLL only "
          "the calls that still happen (to wait, or to wake the SQ thread). SQ thread: the iou-sqp threads' "
          "share of the CPU cost, which already counts them (they are threads of the sidecar).")


if __name__ == "__main__":
    main()
