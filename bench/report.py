#!/usr/bin/python3
"""Turns bridge-load's JSON lines into the markdown tables of bench/results/latest.md.

Usage: report.py [--load-start=..] [--load-end=..] [--quick=0|1] RUN.jsonl...
"""
import json
import os
import platform
import subprocess
import sys
import time

ORDER = ["fanout", "fanout-max", "fanout-tls", "fanout-light", "channels", "slow-consumer", "idle", "connect-storm"]
CONNECT_ONLY = {"idle", "connect-storm"}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def git_rev():
    try:
        return subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse",
                               "--short", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return "?"


def f(v, digits=2):
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def event_row(r):
    return [
        r["target"], r["publish"], f"{r['connections_ready']:,}/{r['subscribers']:,}",
        f"{r['published']:,}", f"{r['delivered']:,}/{r['expected']:,}", f(r["lost"]),
        f(r["duplicated"]), f(r["deliveries_per_sec"], 0), f(r["p50_ms"]), f(r["p90_ms"]),
        f(r["p99_ms"]), f(r["p999_ms"]), f(r["max_ms"]), f(r["publisher_lag_ms"], 0),
        f(r["server_cpu_seconds"]), f(r["cpu_per_delivery_us"]), f(r["tool_cpu_seconds"]),
        f(r["server_rss_kib"] / 1024, 1), f(r["errors"]),
    ]


EVENT_HEAD = ["target", "publish", "ready", "published", "delivered/expected", "lost", "dup",
              "deliveries/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "pub lag ms",
              "server CPU s", "CPU µs/delivery", "tool CPU s", "server RSS MiB", "errors"]


def connect_row(r):
    return [
        r["target"], f"{r['connections_ready']:,}/{r['subscribers']:,}", f(r["connect_failures"]),
        f(r["connect_seconds"]), f(r["connects_per_sec"], 0), f(r["connect_p50_ms"]),
        f(r["connect_p99_ms"]), f(r["connect_max_ms"]), f(r["connect_server_cpu_seconds"]),
        f(r["server_rss_base_kib"] / 1024, 1), f(r["server_rss_connected_kib"] / 1024, 1),
        f(r["rss_per_connection_kib"]), f(r["errors"]),
    ]


CONNECT_HEAD = ["target", "ready", "failures", "connect s", "connects/s", "p50 ms", "p99 ms",
                "max ms", "server CPU s", "RSS before MiB", "RSS connected MiB", "RSS/conn KiB",
                "errors"]


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def main():
    opts = {}
    files = []
    for a in sys.argv[1:]:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            opts[k] = v
        else:
            files.append(a)
    runs = []
    for path in files:
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    runs.append(json.loads(line))
    print("# Benchmark results (latest run)\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M')}, commit {git_rev()}"
          f"{', QUICK mode (reduced counts)' if opts.get('quick') == '1' else ''}")
    print(f"- machine: {os.cpu_count()} CPUs, {cpu_model()}, kernel {platform.release()}")
    print(f"- load average (1/5/15 min) at start: {opts.get('load-start', '?')}, at end: "
          f"{opts.get('load-end', '?')}; server, nchan and load tool share the same cores")
    if opts.get("server"):
        try:
            built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(opts["server"])))
        except OSError:
            built = "?"
        print(f"- bridge binary: `{opts['server']}` (built {built} UTC; the commit above is the "
              "repository's, which may be newer than the binary)")
    print("- sink = bridge-load's built-in broadcaster (the tool's own ceiling; its CPU is the "
          "sink thread, its RSS the whole tool)\n")
    scenarios = sorted({r["scenario"] for r in runs},
                       key=lambda s: ORDER.index(s) if s in ORDER else 99)
    for s in scenarios:
        rs = [r for r in runs if r["scenario"] == s]
        first = rs[0]
        if s in CONNECT_ONLY:
            print(f"## {s}: {first['subscribers']:,} connections\n")
            print(table(CONNECT_HEAD, [connect_row(r) for r in rs]))
        else:
            rate = "as fast as accepted" if not first["rate"] else f"{first['rate']:g}/s"
            print(f"## {s}: {first['subscribers']:,} subscribers on {first['channels']:,} "
                  f"channel(s), {first['events']:,} events at {rate}\n")
            print(table(EVENT_HEAD, [event_row(r) for r in rs]))
            if any(r.get("tls") for r in rs):
                print()
                for r in rs:
                    if r.get("tls"):
                        print(f"- {r['target']}: subscribers on {r['tls_version']} "
                              f"{r['tls_cipher']} (publishing plain); connect p50 "
                              f"{f(r['connect_p50_ms'])} ms, p99 {f(r['connect_p99_ms'])} ms, "
                              f"server CPU while connecting {f(r['connect_server_cpu_seconds'])} s")
            if any(r.get("slow_subscribers") for r in rs):
                print()
                for r in rs:
                    print(f"- {r['target']}: {r['slow_subscribers']} slow subscribers, "
                          f"{r['slow_ended_by_server']} ended by the server, "
                          f"end reasons {json.dumps(r['end_reasons'])}")
        errs = [(r["target"], r["error_samples"]) for r in rs if r["error_samples"]]
        if errs:
            print()
            for target, samples in errs:
                print(f"- {target} errors: " + "; ".join(f"`{e}`" for e in samples))
        print()


if __name__ == "__main__":
    main()
