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

      --instances ID1,ID2: start one CMD per id, each with `--instance-id ID`
      appended (scale-out: the processes share the flow); CPU is the sum over
      them, VmHWM is per process (peak_rss_mb: the largest), logs go to
      FILE with -ID before the extension.

  measure.py takeover --strait BIN --config CFG --source-bootstrap A
                      --source-topic TS --dest-bootstrap B --dest-topic TD
                      --partitions P [--instances s1,s2] [--repeats 5]
                      [--session-timeout-ms 10000] [--trickle-rate 200] ...
      Takeover after SIGKILL. Produces a steady trickle into TS (round robin
      over its partitions), starts one `strait run` per instance id and waits
      until they share all P partitions and the destination caught up. Then,
      per repeat: picks the victim (s2, s1, s2, ...), notes three of its
      partitions from `strait status --json`, SIGKILLs it (t0 = just before
      the kill), produces one probe record (unique key) into each of those
      partitions, and measures
        expelled_s    first status without the victim (its session expired)
        reassigned_s  first status with the survivor alone owning all P
                      partitions, the group Stable, nothing waiting for handoff
                      (taken when the status call returned)
        resumed_s     every probe record read from the destination partition
                      (a consumer assigned there before t0, matching the key)
        takeover_s    max(reassigned_s, resumed_s)
      then restarts the victim (same instance id) and waits until both share
      the partitions again (rejoin_balanced_s). Prints one JSON object.

  measure.py latency ... / measure.py steady-load ...
      Latency under a steady load (run.sh --latency): see latency.py.

  measure.py source-bytes DATADIR TOPIC
      Sum of the .log segment sizes of TOPIC's partitions under DATADIR.

  measure.py report --in results.jsonl --md OUT.md --json OUT.json [--meta k=v ...]
      Markdown table + JSON from the per-run JSON lines.
"""
import sys
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import latency
import report_wan

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


def instance_specs(a):
    """[(instance id or None, argv, log path or None)]: one per process."""
    if not a.instances:
        return [(None, a.cmd, a.log)]
    out = []
    for i in a.instances.split(","):
        log = None
        if a.log:
            root, ext = os.path.splitext(a.log)
            log = "%s-%s%s" % (root, i, ext)
        out.append((i, a.cmd + ["--instance-id", i], log))
    return out


def _run(a, proc_box):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": a.dest_bootstrap, "log_level": 2})
    brokers = [int(p) for p in a.broker_pids.split(",") if p]
    b0 = {p: proc_cpu(p) or 0.0 for p in brokers}
    m0 = machine_busy_s()
    self0 = proc_cpu(os.getpid())
    px0 = proc_cpu(a.proxy_pid) if a.proxy_pid else None
    specs = instance_specs(a)
    logs = [open(l, "ab") if l else subprocess.DEVNULL for _, _, l in specs]
    t0 = time.monotonic()
    procs = []
    for (_, cmd, _), log in zip(specs, logs):
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc_box.append(proc)
        procs.append(proc)
    first = None
    done = None
    count = 0
    hwm = [0.0] * len(procs)
    cpus = None
    polls = 0
    err = None

    def sample_hwm():
        for k, p in enumerate(procs):
            h = proc_hwm_mb(p.pid)
            if h:
                hwm[k] = max(hwm[k], h)

    while True:
        # Poll faster until the first batch shows, so its time is not rounded up.
        time.sleep(a.poll if first is not None else min(a.poll, 0.1))
        now = time.monotonic() - t0
        sample_hwm()
        dead = [(specs[k][0], p.returncode) for k, p in enumerate(procs) if p.poll() is not None]
        if dead:
            if len(procs) == 1:
                err = "replicator exited with status %s before completion" % dead[0][1]
            else:
                err = "; ".join("replicator %s exited with status %s before completion" % d
                                for d in dead)
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
                cpus = [proc_cpu(p.pid) for p in procs]
                sample_hwm()
                break
        if now > a.timeout:
            err = "timeout after %ss: %d of %d records on the destination" % (a.timeout, count, a.expect)
            cpus = [proc_cpu(p.pid) for p in procs]
            break
    known = [c for c in (cpus or []) if c is not None]
    cpu = sum(known) if known else None
    bcpu = sum((proc_cpu(p) or b0[p]) - b0[p] for p in brokers)
    # The delaying proxy (WAN mode): its CPU from t0 to completion.
    pxcpu = None
    if px0 is not None:
        px1 = proc_cpu(a.proxy_pid)
        pxcpu = px1 - px0 if px1 is not None else None
    # Everything else the machine did meanwhile (this poller, other users):
    # a contention indicator.
    other = machine_busy_s() - m0 - bcpu - (cpu or 0.0) - (pxcpu or 0.0)
    poller = proc_cpu(os.getpid()) - self0
    wall_at = time.monotonic() - t0
    # Stop the replicators (not measured): signal all, then wait for each.
    stop_t = time.monotonic()
    sig = signal.SIGINT if a.stop_signal == "INT" else signal.SIGTERM
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    codes = []
    for (i, _, _), p in zip(specs, procs):
        try:
            codes.append(p.wait(timeout=max(1.0, 60 - (time.monotonic() - stop_t))))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
            err = ((err + "; " if err else "") + "did not stop within 60 s (SIGKILL)"
                   + (" (%s)" % i if i else ""))
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
        "peak_rss_mb": round(max(hwm), 1),
        "other_cpu_s": round(other, 2),
        "poller_cpu_s": round(poller, 2),
        "stop_s": round(stop_s, 2),
        "exit_code": codes[0] if len(codes) == 1 else None,
        "polls": polls,
        "measured_until_s": round(wall_at, 2),
        "error": err,
    }
    if pxcpu is not None:
        res["proxy_cpu_s"] = round(pxcpu, 2)
        # Share of one core over the measured time (t0 until completion).
        res["proxy_core_share"] = round(pxcpu / wall_at, 3) if wall_at > 0 else None
    if a.instances:
        ids = [i for i, _, _ in specs]
        res["instances"] = ids
        res["exit_codes"] = dict(zip(ids, codes))
        res["cpu_s_each"] = {i: (round(c, 2) if c is not None else None)
                             for i, c in zip(ids, cpus or [None] * len(ids))}
        res["peak_rss_mb_each"] = {i: round(h, 1) for i, h in zip(ids, hwm)}
    print(json.dumps(res))
    return 0 if err is None else 1


# ------------------------------------------------------------ takeover ----

def end_offsets_map(admin, topic, partitions):
    """{partition: latest offset} for the partitions that answered ({} while
    the topic doesn't exist)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec
    md = admin.list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    req = {TopicPartition(topic, p): OffsetSpec.latest()
           for p in range(partitions) if p in t.partitions}
    if not req:
        return {}
    out = {}
    # A busy broker may fail some partitions of a 1,000-partition request:
    # ask again for those (a missing partition reads as "not there yet").
    for _ in range(3):
        for tp, fut in admin.list_offsets(req, request_timeout=10).items():
            try:
                out[tp.partition] = fut.result().offset
            except Exception:
                pass
        req = {tp: spec for tp, spec in req.items() if tp.partition not in out}
        if not req:
            break
    return out


def strait_status(strait, config, timeout=30):
    """The first flow of `strait status --config CFG --json`, or None."""
    try:
        r = subprocess.run([strait, "status", "--config", config, "--json"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            try:
                flows = json.loads(line).get("flows") or []
            except ValueError:
                return None
            return flows[0] if flows else None
    return None


def owners(flow, topic):
    """{instance id: set of TOPIC's partitions it owns}, partitions waiting
    for handoff (all members)."""
    own, pending = {}, 0
    for m in (flow or {}).get("members") or []:
        own[m.get("instance_id")] = set((m.get("partitions") or {}).get(topic) or [])
        pending += m.get("waiting_for_handoff") or 0
    return own, pending


def shared_by(flow, topic, ids, partitions):
    """True when exactly IDS are in the Stable group, each owning some of the
    partitions, every partition owned once, nothing waiting for handoff."""
    if flow is None or str(flow.get("state", "")).lower() != "stable":
        return False
    own, pending = owners(flow, topic)
    if sorted(own) != sorted(ids) or pending:
        return False
    union = set().union(*own.values())
    return (all(own.values()) and len(union) == partitions
            and sum(len(v) for v in own.values()) == partitions)


class Trickle(threading.Thread):
    """Produces RATE records/s (1000-byte random values) into TOPIC, round
    robin over its partitions, until stopped."""

    def __init__(self, bootstrap, topic, partitions, rate, codec):
        super().__init__(daemon=True)
        from confluent_kafka import Producer
        self.producer = Producer({"bootstrap.servers": bootstrap, "log_level": 2,
                                  "compression.type": codec, "linger.ms": 5, "acks": "all"})
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.stopped = threading.Event()
        self.sent = 0
        self.failed = 0

    def _cb(self, err, msg):
        if err is not None:
            self.failed += 1

    def run(self):
        start = time.monotonic()
        n = 0
        while not self.stopped.is_set():
            due = int(self.rate * (time.monotonic() - start))
            while n < due and not self.stopped.is_set():
                try:
                    self.producer.produce(self.topic, key=b"trickle-%d" % n, value=os.urandom(1000),
                                          partition=n % self.partitions, on_delivery=self._cb)
                    n += 1
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(30)
        self.sent = n

    def stop(self):
        self.stopped.set()
        self.join(60)


def cmd_takeover(a):
    procs = {}
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        return _takeover(a, procs)
    finally:
        # interrupted: never leave a member running
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _takeover(a, procs):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient
    ids = a.instances.split(",")
    if len(ids) != 2:
        raise SystemExit("takeover: --instances takes two ids")
    src_admin = AdminClient({"bootstrap.servers": a.source_bootstrap, "log_level": 2})
    dst_admin = AdminClient({"bootstrap.servers": a.dest_bootstrap, "log_level": 2})
    target = a.session_timeout_ms / 1000.0 + 2.0
    res = {"label": "strait-takeover", "partitions": a.partitions, "instances": ids,
           "session_timeout_ms": a.session_timeout_ms, "target_s": target,
           "trickle_rate": a.trickle_rate, "repeats": a.repeats, "runs": [], "error": None}
    logs = {}

    def start(i):
        if i not in logs:
            logs[i] = (open("%s-%s%s" % (os.path.splitext(a.log)[0], i, os.path.splitext(a.log)[1]), "ab")
                       if a.log else subprocess.DEVNULL)
        procs[i] = subprocess.Popen(
            [a.strait, "run", "--config", a.config, "--progress", "0", "--instance-id", i],
            stdin=subprocess.DEVNULL, stdout=logs[i], stderr=subprocess.STDOUT,
            start_new_session=True)

    def alive_or_raise(which):
        for i in which:
            if procs[i].poll() is not None:
                raise RuntimeError("member %s exited with status %s" % (i, procs[i].returncode))

    def wait_shared(which, what):
        """Seconds until WHICH share all partitions (status polled back to back)."""
        t = time.monotonic()
        while True:
            alive_or_raise(which)
            if shared_by(strait_status(a.strait, a.config), a.source_topic, which, a.partitions):
                return time.monotonic() - t
            if time.monotonic() - t > a.stage_timeout:
                raise RuntimeError("%s: %s not sharing %d partitions after %ss"
                                   % (what, ",".join(which), a.partitions, a.stage_timeout))
            time.sleep(a.status_interval)

    def wait_caught_up(what):
        """Until every destination partition reaches the source end offsets
        read now (at-least-once: duplicates only add)."""
        t = time.monotonic()
        want = {}
        while True:
            # Every source partition's end, read until each answered once (a
            # just-created topic's partitions answer over a few seconds).
            if len(want) < a.partitions:
                got = end_offsets_map(src_admin, a.source_topic, a.partitions)
                want.update({p: o for p, o in got.items() if p not in want})
            have = end_offsets_map(dst_admin, a.dest_topic, a.partitions)
            if len(want) == a.partitions and all(have.get(p, -1) >= o for p, o in want.items()):
                return sum(want.values()), sum(have.values())
            if time.monotonic() - t > a.stage_timeout:
                raise RuntimeError("%s: destination not caught up after %ss (%d of %d partitions; "
                                   "offsets read for %d source and %d destination partitions)"
                                   % (what, a.stage_timeout,
                                      sum(1 for p, o in want.items() if have.get(p, -1) >= o),
                                      a.partitions, len(want), len(have)))
            time.sleep(0.5)

    trickle = Trickle(a.source_bootstrap, a.source_topic, a.partitions, a.trickle_rate, a.codec)
    trickle.start()
    probe_producer = Producer({"bootstrap.servers": a.source_bootstrap, "log_level": 2,
                               "linger.ms": 0, "acks": "all", "compression.type": a.codec})
    consumer = Consumer({"bootstrap.servers": a.dest_bootstrap, "log_level": 2,
                         "group.id": "strait-e2e-takeover-%d" % os.getpid(),
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "fetch.wait.max.ms": 50})
    watching = []  # the status watcher's stop event (set on any exit)
    try:
        for i in ids:
            start(i)
        res["initial_shared_s"] = round(wait_shared(ids, "start"), 2)
        wait_caught_up("start")
        for rep in range(1, a.repeats + 1):
            victim, survivor = ids[rep % 2], ids[(rep + 1) % 2]
            run = {"repeat": rep, "victim": victim, "survivor": survivor}
            res["runs"].append(run)
            alive_or_raise(ids)
            own, _ = owners(strait_status(a.strait, a.config), a.source_topic)
            vparts = sorted(own.get(victim) or [])
            if not vparts:
                raise RuntimeError("repeat %d: %s owns no partitions" % (rep, victim))
            probes = sorted({vparts[(rep * 7 + k * len(vparts) // a.probes) % len(vparts)]
                             for k in range(a.probes)})
            run["probe_partitions"] = probes
            keys = {b"takeover-probe-%d-%d-%d" % (os.getpid(), rep, p): p for p in probes}
            assign = []
            for p in probes:
                _, hi = consumer.get_watermark_offsets(TopicPartition(a.dest_topic, p), timeout=10)
                assign.append(TopicPartition(a.dest_topic, p, hi))
            consumer.assign(assign)
            consumer.consume(num_messages=1000, timeout=0.5)  # start fetching
            seen = {}
            marks = {}
            done_ev = threading.Event()
            watching.append(done_ev)

            def watch_status(t0, victim=victim, survivor=survivor, marks=marks, done_ev=done_ev):
                while not done_ev.is_set():
                    flow = strait_status(a.strait, a.config)
                    now = time.monotonic() - t0
                    if flow is not None:
                        own, _ = owners(flow, a.source_topic)
                        if "expelled" not in marks and victim not in own:
                            marks["expelled"] = now
                        if shared_by(flow, a.source_topic, [survivor], a.partitions):
                            marks["reassigned"] = now
                            return
                    time.sleep(a.status_interval)

            # t0: just before the SIGKILL.
            t0 = time.monotonic()
            os.kill(procs[victim].pid, signal.SIGKILL)
            procs[victim].wait()
            watcher = threading.Thread(target=watch_status, args=(t0,), daemon=True)
            watcher.start()
            failed = []
            for k, p in keys.items():
                probe_producer.produce(a.source_topic, key=k, value=b"probe", partition=p,
                                       on_delivery=lambda err, msg: err and failed.append(err))
            if probe_producer.flush(10) or failed:
                raise RuntimeError("repeat %d: probe records not acknowledged by the source: %s"
                                   % (rep, failed))
            run["probe_produced_s"] = round(time.monotonic() - t0, 3)
            while len(seen) < len(keys) and time.monotonic() - t0 < a.stage_timeout:
                alive_or_raise([survivor])
                for m in consumer.consume(num_messages=1000, timeout=0.1):
                    if m.error() is None and m.key() in keys and m.key() not in seen:
                        seen[m.key()] = time.monotonic() - t0
            watcher.join(max(0.0, a.stage_timeout - (time.monotonic() - t0)))
            done_ev.set()
            run["expelled_s"] = round(marks["expelled"], 2) if "expelled" in marks else None
            run["reassigned_s"] = round(marks["reassigned"], 2) if "reassigned" in marks else None
            run["resumed_s"] = round(max(seen.values()), 2) if len(seen) == len(keys) else None
            if run["reassigned_s"] is None or run["resumed_s"] is None:
                run["takeover_s"] = None
                raise RuntimeError("repeat %d: no takeover within %ss (survivor owns all: %s, "
                                   "probes on the destination: %d of %d)"
                                   % (rep, a.stage_timeout, run["reassigned_s"], len(seen), len(keys)))
            run["takeover_s"] = max(run["reassigned_s"], run["resumed_s"])
            consumer.unassign()
            # Back to two members before the next kill.
            start(victim)
            run["rejoin_balanced_s"] = round(wait_shared(ids, "repeat %d restart" % rep), 2)
            time.sleep(a.settle)
    except Exception as e:  # RuntimeError above, or a client error: report it
        res["error"] = str(e) or repr(e)
    finally:
        for ev in watching:
            ev.set()
        trickle.stop()
        res["trickle_sent"] = trickle.sent
        res["trickle_failed"] = trickle.failed
        consumer.close()
    if res["error"] is None:
        # Everything produced (trickle and probes) reached the destination.
        try:
            s, d = wait_caught_up("end")
            res["final_source_records"], res["final_dest_records"] = s, d
        except RuntimeError as e:
            res["error"] = str(e)
    sig = signal.SIGINT
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(sig)
    for i, p in procs.items():
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    vals = [r.get("takeover_s") for r in res["runs"] if r.get("takeover_s") is not None]
    res["takeover_s"] = vals
    res["takeover_median_s"] = median(vals)
    res["within_target"] = (res["takeover_median_s"] <= target
                            if res["takeover_median_s"] is not None else None)
    print(json.dumps(res))
    return 0 if res["error"] is None else 1


def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    m = len(vals) // 2
    return vals[m] if len(vals) % 2 else round((vals[m - 1] + vals[m]) / 2, 3)


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def fmt_int(v):
    return "–" if v is None else "{:,}".format(int(round(v)))


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


def scale_report(out, workloads, grouped, by, ratios):
    """The scale-out section (tools strait-scale-1p, strait-scale-2p and
    strait-takeover): appends its tables to OUT, returns the takeover summary
    per workload."""
    scale = [w for w in workloads
             if any((w, t) in by for t in ("strait-scale-1p", "strait-scale-2p"))]
    if scale:
        out.append("")
        out.append("## Scale-out: one process against two (same config, instance ids s1, s2)\n")
        out.append("CPU is the sum over the processes, peak RSS is per process; wall s until "
                   "the destination holds every record. Medians over the runs.\n")
        out.append("| workload | processes | wall s | MB/s | replicator CPU s (sum) | CPU s/GB | "
                   "peak RSS MB per process | broker CPU s | other CPU s | records on destination |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for w in scale:
            for tool in ("strait-scale-1p", "strait-scale-2p"):
                r = by.get((w, tool))
                if not r:
                    continue
                runs = grouped[(w, tool)]
                ok = [x for x in runs if not x.get("error")] or runs
                ids = r.get("instances") or []
                rss = " / ".join("%s %s" % (i, fmt(median([(x.get("peak_rss_mb_each") or {}).get(i)
                                                            for x in ok]), 0)) for i in ids)
                note = " (%s)" % r["error"] if r.get("error") else ""
                if r.get("runs", 1) > 1:
                    note += " ×%d" % r["runs"] + (", %d failed" % r["failed_runs"] if r["failed_runs"] else "")
                out.append("| %s | %d (%s)%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    w, len(ids), ", ".join(ids), note, fmt(r.get("wall_s"), 2), fmt(r.get("mb_per_s")),
                    fmt(r.get("cpu_s"), 2), fmt(r.get("cpu_s_per_gb"), 2), rss or "–",
                    fmt(r.get("broker_cpu_s"), 1), fmt(r.get("other_cpu_s"), 1),
                    "%s of %s" % (fmt_int(median([x.get("replicated") for x in ok])),
                                  fmt_int(r.get("records")))))
        out.append("")
        out.append("| workload | CPU/GB two processes / one (target ≤ 1.1) | wall two / one |")
        out.append("|---|---:|---:|")
        for r in ratios:
            if r["workload"] in scale:
                v = r["cpu_per_gb_two_processes_over_one"]
                out.append("| %s | %s%s | %s |" % (
                    r["workload"], fmt(v, 3),
                    "" if v is None else (" (met)" if v <= 1.1 else " (missed)"),
                    fmt(r["wall_two_processes_over_one"], 2)))
    summary = []
    for w in workloads:
        runs = grouped.get((w, "strait-takeover"))
        if not runs:
            continue
        kills = [k for r in runs for k in r.get("runs") or []]
        vals = [k["takeover_s"] for k in kills if k.get("takeover_s") is not None]
        med = median(vals)
        first = runs[0]
        target = first.get("target_s")
        summary.append({
            "workload": w,
            "session_timeout_ms": first.get("session_timeout_ms"),
            "target_s": target,
            "takeover_median_s": med,
            "takeover_s": vals,
            "expelled_median_s": median([k.get("expelled_s") for k in kills]),
            "reassigned_median_s": median([k.get("reassigned_s") for k in kills]),
            "resumed_median_s": median([k.get("resumed_s") for k in kills]),
            "rejoin_balanced_median_s": median([k.get("rejoin_balanced_s") for k in kills]),
            "within_target": med <= target if med is not None and target is not None else None,
            "errors": [r["error"] for r in runs if r.get("error")],
        })
    if summary:
        out.append("")
        out.append("## Takeover after SIGKILL (two processes, a trickle of %s records/s)\n"
                   % fmt(grouped[(summary[0]["workload"], "strait-takeover")][0].get("trickle_rate"), 0))
        out.append("Seconds from the SIGKILL of one member until the survivor owns every partition "
                   "(`strait status`) and a record produced after the kill into a partition of the "
                   "killed member is on the destination. Target: session_timeout_ms + 2 s.\n")
        out.append("| workload | session_timeout_ms | takeover s (median) | target s | all values s | "
                   "victim left the group s | survivor owns all s | probes on destination s | "
                   "restarted member back s |")
        out.append("|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for t in summary:
            note = ""
            if t["within_target"] is not None:
                note = " (met)" if t["within_target"] else " (missed)"
            if t["errors"]:
                note += " (%s)" % "; ".join(t["errors"])
            out.append("| %s | %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
                t["workload"], t["session_timeout_ms"], fmt(t["takeover_median_s"], 2), note,
                fmt(t["target_s"], 1), ", ".join(fmt(v, 2) for v in t["takeover_s"]) or "–",
                fmt(t["expelled_median_s"], 2), fmt(t["reassigned_median_s"], 2),
                fmt(t["resumed_median_s"], 2), fmt(t["rejoin_balanced_median_s"], 2)))
    return summary


def cmd_report(a):
    all_rows = [json.loads(l) for l in open(a.infile) if l.strip()]
    # WAN and latency rows have sections of their own (report_wan.py).
    rows = [r for r in all_rows if not r.get("mode")]
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
    main_tools = ("strait", "strait-prefix", "strait-2flows", "strait-eos", "mm2", "floor")
    # The main tables, unless only the scale-out section ran.
    has_main = any((w, t) in by for w in workloads for t in main_tools)
    if has_main:
        out.append("| workload | tool | source MB | wall s | MB/s | MB/s after 1st batch | "
                   "replicator CPU s | CPU s/GB | broker CPU s | peak RSS MB | first batch s | other CPU s |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for w in workloads:
        for tool in main_tools:
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
        one, twop = by.get((w, "strait-scale-1p")), by.get((w, "strait-scale-2p"))
        ratios[-1].update({
            "cpu_per_gb_two_processes_over_one": ratio(g(twop, "cpu_s_per_gb"), g(one, "cpu_s_per_gb")),
            "wall_two_processes_over_one": ratio(g(twop, "wall_s"), g(one, "wall_s")),
        })
    if has_main:
        out.append("")
        out.append("| workload | throughput strait/MM2 | (after 1st batch) | CPU/GB strait/MM2 | "
                   "CPU/GB strait/floor | broker CPU strait/MM2 |")
        out.append("|---|---:|---:|---:|---:|---:|")
    for r in ratios if has_main else []:
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
    takeover = scale_report(out, workloads, grouped, by, ratios)
    wan = report_wan.wan_section(all_rows, out)
    lat = report_wan.latency_section(all_rows, out)
    md = "\n".join(out) + "\n"
    with open(a.md, "w") as f:
        f.write(md)
    with open(a.json, "w") as f:
        doc = {"meta": meta, "runs": all_rows}
        if rows:
            doc["ratios"] = ratios
        if takeover:
            doc["takeover"] = takeover
        if wan:
            doc["wan"] = wan
        if lat:
            doc["latency"] = lat
        json.dump(doc, f, indent=2)
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
    r.add_argument("--instances", default="",
                   help="comma-separated instance ids: one CMD per id, with --instance-id ID")
    r.add_argument("--proxy-pid", type=int, default=0,
                   help="pid of the delaying proxy (WAN mode): its CPU is reported")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    k = sub.add_parser("takeover")
    k.add_argument("--strait", required=True, help="the strait binary")
    k.add_argument("--config", required=True)
    k.add_argument("--source-bootstrap", required=True)
    k.add_argument("--source-topic", required=True)
    k.add_argument("--dest-bootstrap", required=True)
    k.add_argument("--dest-topic", required=True)
    k.add_argument("--partitions", type=int, required=True)
    k.add_argument("--instances", default="s1,s2")
    k.add_argument("--repeats", type=int, default=5)
    k.add_argument("--session-timeout-ms", type=int, default=10000,
                   help="the config's session_timeout_ms (for the target: it + 2 s)")
    k.add_argument("--trickle-rate", type=float, default=200, help="records/s into the source topic")
    k.add_argument("--codec", default="lz4")
    k.add_argument("--probes", type=int, default=3, help="probe records (victim partitions) per kill")
    k.add_argument("--status-interval", type=float, default=0.2,
                   help="pause between `strait status` calls")
    k.add_argument("--settle", type=float, default=3.0,
                   help="s to wait after both members share the partitions again")
    k.add_argument("--stage-timeout", type=float, default=180)
    k.add_argument("--log")
    latency.add_parsers(sub)
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
    if a.sub == "takeover":
        sys.exit(cmd_takeover(a))
    if a.sub == "latency":
        if a.cmd and a.cmd[0] == "--":
            a.cmd = a.cmd[1:]
        sys.exit(latency.cmd_latency(a, os.path.abspath(__file__)))
    if a.sub == "steady-load":
        latency.cmd_steady_load(a)
        return
    if a.sub == "source-bytes":
        cmd_source_bytes(a)
    if a.sub == "report":
        cmd_report(a)


if __name__ == "__main__":
    main()
