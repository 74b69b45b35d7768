"""Report sections of the WAN and latency modes (benches/e2e/run.sh --wan,
--latency), used by `measure.py report`. Result rows carry "mode" ("wan" or
"latency") and "rtt_ms"; several rounds of one (workload, RTT, tool) are
reduced to the median of each figure."""


def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    m = len(vals) // 2
    return vals[m] if len(vals) % 2 else round((vals[m - 1] + vals[m]) / 2, 3)


def fmt(v, nd=1):
    if v is None:
        return "–"
    return ("{:,.%df}" % nd).format(v)


def ratio(a, b):
    return a / b if a is not None and b else None


def _get(r, path):
    for k in path.split("."):
        r = (r or {}).get(k)
    return r


def _med(runs, path):
    ok = [r for r in runs if not r.get("error")] or runs
    return median([_get(r, path) for r in ok])


def _note(runs):
    errs = [r["error"] for r in runs if r.get("error")]
    n = ""
    if len(runs) > 1:
        n = " ×%d" % len(runs) + (", %d failed" % len(errs) if errs else "")
    elif errs:
        n = " (%s)" % errs[0]
    return n


def _proxy(runs):
    cpu, share = _med(runs, "proxy_cpu_s"), _med(runs, "proxy_core_share")
    frames = _med(runs, "proxy_frames")
    if cpu is None:
        return "–"
    return "%s (%s)%s" % (fmt(cpu, 2), fmt(share, 2),
                          "" if frames is None else ", %s frames" % fmt(frames, 0))


def _groups(rows, mode):
    g = {}
    for r in rows:
        if r.get("mode") == mode:
            g.setdefault((r["workload"], r["rtt_ms"], r["tool"]), []).append(r)
    return g


def wan_section(rows, out):
    """Appends the WAN table to OUT; returns its summary rows (for the JSON)."""
    g = _groups(rows, "wan")
    if not g:
        return []
    side = next((r.get("wan_side") for r in rows if r.get("mode") == "wan"), "?")
    out.append("")
    out.append("## WAN: the replicator reaches the %s cluster through the delaying proxy\n" % side)
    out.append("RTT = the round trip the proxy adds (RTT/2 per direction and frame). Medians over the "
               "rounds. \"share of 0 ms\" is strait's MB/s over its own MB/s at RTT 0 (through the "
               "same proxy). Proxy CPU: CPU s of the proxy process from the replicator's start "
               "until completion, and its share of one core over that time; frames: Kafka frames "
               "it forwarded in that run (both directions), which shows the replicator's traffic "
               "went through it.\n")
    out.append("| workload | RTT ms | strait MB/s | MM2 MB/s | strait share of 0 ms | strait/MM2 | "
               "(after 1st batch) | CPU s/GB strait | CPU s/GB MM2 | peak RSS MB strait | "
               "peak RSS MB MM2 | proxy CPU s (core share) strait run | MM2 run |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    workloads = []
    for w, _, _ in g:
        if w not in workloads:
            workloads.append(w)
    for w in workloads:
        rtts = sorted({rtt for ww, rtt, _ in g if ww == w})
        base = _med(g.get((w, 0, "strait"), []), "mb_per_s")
        for rtt in rtts:
            s, m = g.get((w, rtt, "strait"), []), g.get((w, rtt, "mm2"), [])
            row = {"workload": w, "rtt_ms": rtt}
            for tag, runs in (("strait", s), ("mm2", m)):
                for k in ("mb_per_s", "mb_per_s_after_first", "cpu_s_per_gb", "peak_rss_mb",
                          "proxy_cpu_s", "proxy_core_share", "wall_s"):
                    row["%s_%s" % (tag, k)] = _med(runs, k) if runs else None
                row["%s_runs" % tag] = len(runs)
            row["strait_share_of_0ms"] = ratio(row["strait_mb_per_s"], base)
            row["throughput_strait_over_mm2"] = ratio(row["strait_mb_per_s"], row["mm2_mb_per_s"])
            row["throughput_after_first_strait_over_mm2"] = ratio(
                row["strait_mb_per_s_after_first"], row["mm2_mb_per_s_after_first"])
            summary.append(row)
            out.append("| %s | %d | %s%s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w, rtt, fmt(row["strait_mb_per_s"]), _note(s), fmt(row["mm2_mb_per_s"]), _note(m),
                fmt(row["strait_share_of_0ms"], 2), fmt(row["throughput_strait_over_mm2"], 2),
                fmt(row["throughput_after_first_strait_over_mm2"], 2),
                fmt(row["strait_cpu_s_per_gb"], 2), fmt(row["mm2_cpu_s_per_gb"], 2),
                fmt(row["strait_peak_rss_mb"], 0), fmt(row["mm2_peak_rss_mb"], 0),
                _proxy(s), _proxy(m)))
    return summary


def latency_section(rows, out):
    """Appends the latency table to OUT; returns its summary rows."""
    g = _groups(rows, "latency")
    if not g:
        return []
    first = next(r for r in rows if r.get("mode") == "latency")
    out.append("")
    out.append("## Latency under a steady load (%s MB/s of 1 KB records, lz4, %s partitions; "
               "window %s s after %s s of warm-up; replicator reaches the %s cluster through "
               "the proxy)\n" % (fmt(first.get("rate_mb_per_s"), 1), first.get("partitions", 8),
                                 fmt(first.get("seconds"), 0), fmt(first.get("warmup_s"), 0),
                                 first.get("wan_side", "?")))
    out.append("Latency = receive time minus the record's timestamp (its produce time). The floor is "
               "the same receiver reading the source topic directly in the same run; \"added p99\" "
               "is the replicator's p99 minus that floor's. Both receivers read their cluster "
               "directly. Core shares are CPU s over the window / window s. Medians over the rounds.\n")
    out.append("| RTT ms | tool | load MB/s | window records | floor p50 / p99 / p99.9 / max ms | "
               "replicated p50 / p99 / p99.9 / max ms | added p99 ms | replicator core share | "
               "peak RSS MB | proxy core share (frames) | missing |")
    out.append("|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|")
    summary = []
    for (w, rtt, tool) in sorted(g, key=lambda k: (k[1], k[2] != "strait", k[2])):
        runs = g[(w, rtt, tool)]
        row = {"rtt_ms": rtt, "tool": tool, "runs": len(runs)}
        for side in ("floor", "replicated"):
            for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
                row["%s_%s" % (side, k)] = _med(runs, "%s.%s" % (side, k))
        for k in ("added_p99_ms", "window_records", "cpu_core_share", "proxy_core_share",
                  "peak_rss_mb", "missing", "ready_s", "proxy_frames"):
            row[k] = _med(runs, k)
        row["load_mb_per_s"] = _med(runs, "load.achieved_mb_per_s")
        summary.append(row)
        pct = lambda side: " / ".join(fmt(row["%s_%s" % (side, k)], 0)
                                      for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms"))
        out.append("| %d | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            rtt, tool, _note(runs), fmt(row["load_mb_per_s"], 2), fmt(row["window_records"], 0), pct("floor"), pct("replicated"),
            fmt(row["added_p99_ms"], 0), fmt(row["cpu_core_share"], 2), fmt(row["peak_rss_mb"], 0),
            "%s (%s frames)" % (fmt(row["proxy_core_share"], 2), fmt(row["proxy_frames"], 0)),
            fmt(row["missing"], 0)))
    return summary
