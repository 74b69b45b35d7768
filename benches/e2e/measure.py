#!/usr/bin/env python3
"""Measurement helper for benches/e2e/run.sh.

  measure.py run --label L --dest-bootstrap B --dest-topic T --partitions P
                 --expect N --source-bytes X --broker-pids P1,P2
                 [--timeout S] [--stop-signal INT|TERM] [--log FILE]
                 -- CMD ARGS...
      Start CMD (t0 = just before the fork), then every 0.5 s ask the
      destination cluster for the end offsets of T (one ListOffsets round
      trip via the admin client; the topic is fresh, so the end offsets sum
      to the number of replicated records). Stops when they reach N, then
      snapshots the replicator's CPU (utime+stime+cutime+cstime of the pid
      from /proc/PID/stat), its VmHWM, and both brokers' CPU delta since t0;
      only then signals the replicator (shutdown is not measured). Prints one
      JSON object.

  measure.py source-bytes DATADIR TOPIC
      Sum of the .log segment sizes of TOPIC's partitions under DATADIR.

  measure.py report --in results.jsonl --md OUT.md --json OUT.json [--meta k=v ...]
      Markdown table + JSON from the per-run JSON lines.
"""
import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime+stime+cutime+cstime of pid in seconds, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    f = s[s.rfind(")") + 2:].split()
    return sum(int(x) for x in f[11:15]) / CLK


def proc_hwm_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def machine_busy_s():
    """Non-idle CPU seconds of the whole machine (all cores) so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK


def cmd_source_bytes(a):
    total = 0
    for d in glob.glob(os.path.join(a.datadir, a.topic + "-*")):
        suffix = os.path.basename(d)[len(a.topic) + 1:]
        if not suffix.isdigit():
            continue
        for seg in glob.glob(os.path.join(d, "*.log")):
            total += os.path.getsize(seg)
    print(total)


def end_offsets_sum(admin, topic, partitions, isolation="read_uncommitted"):
    """Sum of latest offsets (last stable offsets for read_committed), or None
    while the topic/partitions don't exist."""
    from confluent_kafka import IsolationLevel, TopicPartition
    from confluent_kafka.admin import OffsetSpec
    md = admin.list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    # Partitions the destination already has: a freshly created topic with many
    # partitions comes up over seconds, and the first batch lands before the last
    # partition exists (completion still needs every record).
    parts = [p for p in range(partitions) if p in t.partitions]
    if not parts:
        return None
    req = {TopicPartition(topic, p): OffsetSpec.latest() for p in parts}
    iso = (IsolationLevel.READ_COMMITTED if isolation == "read_committed"
           else IsolationLevel.READ_UNCOMMITTED)
    futs = admin.list_offsets(req, isolation_level=iso, request_timeout=10)
    total = 0
    answered = 0
    for tp, fut in futs.items():
        try:
            total += fut.result().offset
            answered += 1
        except Exception:  # no leader yet (the topic is still coming up)
            pass
    return total if answered else None


def cmd_run(a):
    proc_box = []
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        return _run(a, proc_box)
    finally:
        # interrupted: never leave the replicator running
        for p in proc_box:
            if p.poll() is None:
                p.kill()
                p.wait()


def _run(a, proc_box):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": a.dest_bootstrap, "log_level": 2})
    brokers = [int(p) for p in a.broker_pids.split(",") if p]
    b0 = {p: proc_cpu(p) or 0.0 for p in brokers}
    m0 = machine_busy_s()
    self0 = proc_cpu(os.getpid())
    log = open(a.log, "ab") if a.log else subprocess.DEVNULL
    t0 = time.monotonic()
    proc = subprocess.Popen(a.cmd, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc_box.append(proc)
    first = None
    done = None
    count = 0
    hwm = 0.0
    cpu = None
    polls = 0
    err = None
    while True:
        # Poll faster until the first batch shows, so its time is not rounded up.
        time.sleep(a.poll if first is not None else min(a.poll, 0.1))
        now = time.monotonic() - t0
        h = proc_hwm_mb(proc.pid)
        if h:
            hwm = max(hwm, h)
        if proc.poll() is not None:
            err = "replicator exited with status %s before completion" % proc.returncode
            break
        try:
            # Several topics (two flows): complete when the last holds every record.
            counts = [end_offsets_sum(admin, t, a.partitions, a.isolation)
                      for t in a.dest_topic.split(",")]
            c = None if None in counts else min(counts)
        except Exception as e:  # transient admin errors: keep polling
            c = None
        polls += 1
        if c is not None:
            count = c
            if first is None and c > 0:
                first = now
            if c >= a.expect:
                done = now
                cpu = proc_cpu(proc.pid)
                h = proc_hwm_mb(proc.pid)
                if h:
                    hwm = max(hwm, h)
                break
        if now > a.timeout:
            err = "timeout after %ss: %d of %d records on the destination" % (a.timeout, count, a.expect)
            cpu = proc_cpu(proc.pid)
            break
    bcpu = sum((proc_cpu(p) or b0[p]) - b0[p] for p in brokers)
    # Everything else the machine did meanwhile (this poller, other users):
    # a contention indicator.
    other = machine_busy_s() - m0 - bcpu - (cpu or 0.0)
    poller = proc_cpu(os.getpid()) - self0
    wall_at = time.monotonic() - t0
    # Stop the replicator (not measured).
    stop_t = time.monotonic()
    exit_code = proc.poll()
    if exit_code is None:
        proc.send_signal(signal.SIGINT if a.stop_signal == "INT" else signal.SIGTERM)
        try:
            exit_code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = proc.wait()
            err = (err + "; " if err else "") + "did not stop within 60 s (SIGKILL)"
    stop_s = time.monotonic() - stop_t
    gb = a.source_bytes / 1e9
    res = {
        "label": a.label,
        "records": a.expect,
        "replicated": count,
        "source_bytes": a.source_bytes,
        "wall_s": round(done, 2) if done else None,
        "first_batch_s": round(first, 2) if first is not None else None,
        "mb_per_s": round(a.source_bytes / 1e6 / done, 1) if done else None,
        "mb_per_s_after_first": (round(a.source_bytes / 1e6 / (done - first), 1)
                                 if done and first is not None and done > first else None),
        "cpu_s": round(cpu, 2) if cpu is not None else None,
        "cpu_s_per_gb": round(cpu / gb, 2) if cpu is not None and done else None,
        "broker_cpu_s": round(bcpu, 2),
        "peak_rss_mb": round(hwm, 1),
        "other_cpu_s": round(other, 2),
        "poller_cpu_s": round(poller, 2),
        "stop_s": round(stop_s, 2),
        "exit_code": exit_code,
        "polls": polls,
        "measured_until_s": round(wall_at, 2),
        "error": err,
    }
    print(json.dumps(res))
    return 0 if err is None else 1


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


MEDIAN_KEYS = ("wall_s", "first_batch_s", "mb_per_s", "mb_per_s_after_first", "cpu_s",
               "cpu_s_per_gb", "broker_cpu_s", "peak_rss_mb", "other_cpu_s")


def median_row(runs):
    """One row per (workload, tool): the median of each measured column over
    the runs that completed (all runs if none did), with the run count."""
    ok = [r for r in runs if not r.get("error")] or runs
    out = dict(ok[0])
    for k in MEDIAN_KEYS:
        vals = sorted(r[k] for r in ok if r.get(k) is not None)
        if vals:
            m = len(vals) // 2
            out[k] = vals[m] if len(vals) % 2 else round((vals[m - 1] + vals[m]) / 2, 3)
    out["runs"] = len(runs)
    out["failed_runs"] = len(runs) - len([r for r in runs if not r.get("error")])
    return out


def cmd_report(a):
    rows = [json.loads(l) for l in open(a.infile) if l.strip()]
    meta = dict(kv.split("=", 1) for kv in a.meta)
    workloads = []
    for r in rows:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    grouped = {}
    for r in rows:
        grouped.setdefault((r["workload"], r["tool"]), []).append(r)
    by = {k: median_row(v) for k, v in grouped.items()}
    out = []
    out.append("# strait vs MirrorMaker 2 vs bare floor\n")
    for k, v in meta.items():
        out.append("- %s: %s" % (k, v))
    out.append("")
    if any(len(v) > 1 for v in grouped.values()):
        out.append("Rows with several runs show the median of each column (runs interleaved; "
                   "`runs` in the JSON). strait-2flows moves the source bytes twice (two flows); "
                   "its CPU s/GB is per source GB.\n")
    out.append("| workload | tool | source MB | wall s | MB/s | MB/s after 1st batch | "
               "replicator CPU s | CPU s/GB | broker CPU s | peak RSS MB | first batch s | other CPU s |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for w in workloads:
        for tool in ("strait", "strait-prefix", "strait-2flows", "strait-eos", "mm2", "floor"):
            r = by.get((w, tool))
            if not r:
                continue
            note = " (%s)" % r["error"] if r.get("error") else ""
            if r.get("runs", 1) > 1:
                note += " ×%d" % r["runs"] + (", %d failed" % r["failed_runs"] if r["failed_runs"] else "")
            out.append("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w, tool, note, fmt(r["source_bytes"] / 1e6, 0), fmt(r.get("wall_s"), 2),
                fmt(r.get("mb_per_s")), fmt(r.get("mb_per_s_after_first")),
                fmt(r.get("cpu_s"), 2), fmt(r.get("cpu_s_per_gb"), 2),
                fmt(r.get("broker_cpu_s"), 1), fmt(r.get("peak_rss_mb"), 0),
                fmt(r.get("first_batch_s"), 1), fmt(r.get("other_cpu_s"), 1)))
        s, m, f = by.get((w, "strait")), by.get((w, "mm2")), by.get((w, "floor"))
        e = by.get((w, "strait-eos"))
        px, two = by.get((w, "strait-prefix")), by.get((w, "strait-2flows"))
        g = lambda r, k: r.get(k) if r else None
        ratios.append({
            "workload": w,
            "cpu_per_gb_provenance_over_none": ratio(g(s, "cpu_s_per_gb"), g(px, "cpu_s_per_gb")),
            "throughput_provenance_over_none": ratio(g(s, "mb_per_s"), g(px, "mb_per_s")),
            "rss_two_flows_over_one": ratio(g(two, "peak_rss_mb"), g(s, "peak_rss_mb")),
            "throughput_eos_over_strait": ratio(g(e, "mb_per_s"), g(s, "mb_per_s")),
            "cpu_per_gb_eos_over_strait": ratio(g(e, "cpu_s_per_gb"), g(s, "cpu_s_per_gb")),
            "throughput_strait_over_mm2": ratio(g(s, "mb_per_s"), g(m, "mb_per_s")),
            "throughput_after_first_strait_over_mm2":
                ratio(g(s, "mb_per_s_after_first"), g(m, "mb_per_s_after_first")),
            "cpu_per_gb_strait_over_mm2": ratio(g(s, "cpu_s_per_gb"), g(m, "cpu_s_per_gb")),
            "cpu_per_gb_strait_over_floor": ratio(g(s, "cpu_s_per_gb"), g(f, "cpu_s_per_gb")),
            "broker_cpu_strait_over_mm2": ratio(g(s, "broker_cpu_s"), g(m, "broker_cpu_s")),
        })
    out.append("")
    out.append("| workload | throughput strait/MM2 | (after 1st batch) | CPU/GB strait/MM2 | "
               "CPU/GB strait/floor | broker CPU strait/MM2 |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for r in ratios:
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            r["workload"], fmt(r["throughput_strait_over_mm2"], 2),
            fmt(r["throughput_after_first_strait_over_mm2"], 2),
            fmt(r["cpu_per_gb_strait_over_mm2"], 3), fmt(r["cpu_per_gb_strait_over_floor"], 1),
            fmt(r["broker_cpu_strait_over_mm2"], 2)))
    if any(r["cpu_per_gb_provenance_over_none"] is not None or r["rss_two_flows_over_one"] is not None
           for r in ratios):
        out.append("")
        out.append("| workload | CPU/GB with provenance check / without (prefix) | "
                   "throughput with / without | peak RSS two flows / one |")
        out.append("|---|---:|---:|---:|")
        for r in ratios:
            out.append("| %s | %s | %s | %s |" % (
                r["workload"], fmt(r["cpu_per_gb_provenance_over_none"], 3),
                fmt(r["throughput_provenance_over_none"], 3), fmt(r["rss_two_flows_over_one"], 2)))
    if any(r["throughput_eos_over_strait"] is not None for r in ratios):
        out.append("")
        out.append("| workload | throughput exactly-once/at-least-once | CPU/GB exactly-once/at-least-once |")
        out.append("|---|---:|---:|")
        for r in ratios:
            out.append("| %s | %s | %s |" % (r["workload"], fmt(r["throughput_eos_over_strait"], 2),
                                            fmt(r["cpu_per_gb_eos_over_strait"], 2)))
    md = "\n".join(out) + "\n"
    with open(a.md, "w") as f:
        f.write(md)
    with open(a.json, "w") as f:
        json.dump({"meta": meta, "runs": rows, "ratios": ratios}, f, indent=2)
        f.write("\n")
    sys.stdout.write(md)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="sub", required=True)
    r = sub.add_parser("run")
    r.add_argument("--label", required=True)
    r.add_argument("--dest-bootstrap", required=True)
    r.add_argument("--dest-topic", required=True)
    r.add_argument("--partitions", type=int, required=True)
    r.add_argument("--expect", type=int, required=True)
    r.add_argument("--source-bytes", type=int, required=True)
    r.add_argument("--broker-pids", default="")
    r.add_argument("--timeout", type=float, default=900)
    r.add_argument("--stop-signal", choices=["INT", "TERM"], default="INT")
    r.add_argument("--log")
    r.add_argument("--poll", type=float, default=0.5)
    r.add_argument("--isolation", default="read_uncommitted",
                   choices=["read_uncommitted", "read_committed"],
                   help="read_committed: count up to the last stable offset (exactly-once runs; "
                        "transaction markers take offsets, so completion is seen up to one "
                        "marker per partition and transaction early)")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("source-bytes")
    s.add_argument("datadir")
    s.add_argument("topic")
    p = sub.add_parser("report")
    p.add_argument("--in", dest="infile", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    if a.sub == "run":
        if a.cmd and a.cmd[0] == "--":
            a.cmd = a.cmd[1:]
        sys.exit(cmd_run(a))
    if a.sub == "source-bytes":
        cmd_source_bytes(a)
    if a.sub == "report":
        cmd_report(a)


if __name__ == "__main__":
    main()
