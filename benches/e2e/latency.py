"""End-to-end latency under a steady load (benches/e2e/run.sh --latency).

Used through measure.py:

  measure.py latency --label L --source-bootstrap A --source-topic T
                     --dest-bootstrap B --dest-topic D --partitions P
                     --rate BYTES_PER_S --seconds S [--warmup W]
                     [--proxy-pid PID] [--log FILE] [--stop-signal INT|TERM]
                     -- CMD ARGS...
      Starts two receivers: one on T read from A directly (the floor) and one
      on D read from B directly (never through the proxy). Starts CMD (the
      replicator), then produces one probe record per partition of T every
      0.5 s until every partition's probe is on D (the replicator is up).
      Then runs `measure.py steady-load` in a separate process for W + S
      seconds and measures the records produced in the last S seconds (the
      window): for each, receive time minus the record's timestamp, which
      the loader sets to the time it hands the record to its producer. Waits
      until D holds every window record (or --drain-timeout), then stops CMD.
      Prints one JSON object: p50/p99/p99.9/max for the floor and the
      replicator, the added p99, missing records, the replicator's and the
      proxy's CPU over the window.

  measure.py steady-load --bootstrap A --topic T --partitions P --rate R
                         --seconds N --start-at EPOCH_S --window-from EPOCH_S
                         --window-to EPOCH_S
      RATE bytes/s of 1000-byte random values (lz4), keys "0", "1", ...,
      round robin over the partitions, each record's timestamp set to the
      wall-clock time of its produce() call. Prints one JSON object (records
      sent, failed, and how many have a timestamp inside the window).

Receipt stamping: a receiver drains what librdkafka already holds with
consume(1000, timeout=0) and only blocks in poll(0.01) when nothing is
queued, then stamps time.time() right after the call returns. A
consume(N, timeout) call would hold records that arrived early in the call
for up to `timeout` and add that to every latency; this way a record waits
at most one pass over a drained batch. Both receivers run the same code and
settings (fetch.wait.max.ms=100; the broker answers a waiting fetch as soon
as data arrives), so the added latency (replicator minus floor) excludes
the receiver and the loader (its batching, linger.ms=1).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

VALUE_SIZE = 1000


def proc_cpu(pid):
    """utime+stime+cutime+cstime of pid in seconds, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    f = s[s.rfind(")") + 2:].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def parse_rate(s):
    """'10MB/s', '2MB', '500KB/s', '1000000' -> bytes per second (10^3 units)."""
    t = s.strip().upper().replace("/S", "").replace("B", "")
    mult = 1
    for suf, m in (("K", 1e3), ("M", 1e6), ("G", 1e9)):
        if t.endswith(suf):
            t, mult = t[:-1], m
    return float(t) * mult


def percentiles(vals):
    """p50, p99, p99.9, max (nearest rank) of VALS in ms, or Nones."""
    if not vals:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None, "n": 0}
    v = sorted(vals)
    def q(p):
        k = max(0, min(len(v) - 1, int(-(-p * len(v) // 1)) - 1))
        return round(v[k], 1)
    return {"p50_ms": q(0.50), "p99_ms": q(0.99), "p999_ms": q(0.999),
            "max_ms": round(v[-1], 1), "n": len(v)}


class Receiver(threading.Thread):
    """Reads TOPIC (all P partitions, from the beginning) and keeps, per key,
    the record's timestamp and its latency at first receipt (ms)."""

    def __init__(self, bootstrap, topic, partitions):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "e2e-latency-" + uuid.uuid4().hex,
            "enable.auto.commit": False, "fetch.wait.max.ms": 100, "log_level": 2,
            "enable.partition.eof": False})
        self.topic, self.partitions = topic, partitions
        self.first = {}          # key -> (timestamp ms, latency ms)
        self.probes = set()      # partitions whose probe arrived
        self.dups = 0
        self.stopped = threading.Event()

    def _assign(self):
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition
        md = self.consumer.list_topics(topic=self.topic, timeout=5)
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or len(t.partitions) < self.partitions:
            return False
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                              for p in range(self.partitions)])
        return True

    def run(self):
        assigned = False
        while not self.stopped.is_set():
            if not assigned:
                try:
                    assigned = self._assign()
                except Exception:
                    assigned = False
                if not assigned:
                    time.sleep(0.2)
                continue
            msgs = self.consumer.consume(1000, timeout=0)
            if not msgs:
                m = self.consumer.poll(0.01)
                msgs = [m] if m is not None else []
            now = time.time() * 1000.0
            for m in msgs:
                if m.error():
                    continue
                k = m.key() or b""
                if k.startswith(b"probe"):
                    self.probes.add(m.partition())
                    continue
                if k in self.first:
                    self.dups += 1
                    continue
                ts = m.timestamp()[1]
                self.first[k] = (ts, now - ts)
        self.consumer.close()

    def window(self, lo_ms, hi_ms):
        """Latencies of the records with a timestamp in [lo, hi)."""
        return [lat for ts, lat in list(self.first.values()) if lo_ms <= ts < hi_ms]

    def stop(self):
        self.stopped.set()
        self.join(30)


def cmd_steady_load(a):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": a.bootstrap, "log_level": 2, "compression.type": a.codec,
                  "linger.ms": 1, "acks": "all", "batch.size": 262144,
                  "queue.buffering.max.kbytes": 262144})
    # 1024 random values cycled: a 1 MB cycle, longer than lz4's 64 KB window.
    pool = [os.urandom(VALUE_SIZE) for _ in range(1024)]
    failed = [0]
    def cb(err, msg):
        if err is not None:
            failed[0] += 1
    per_s = a.rate / VALUE_SIZE
    lo, hi = a.window_from * 1000, a.window_to * 1000
    while time.time() < a.start_at:
        time.sleep(0.001)
    start = time.time()
    n = in_window = 0
    while True:
        now = time.time()
        if now - start >= a.seconds:
            break
        due = int(per_s * (now - start))
        while n < due:
            ts = int(time.time() * 1000)
            try:
                p.produce(a.topic, key=b"%d" % n, value=pool[n & 1023], partition=n % a.partitions,
                          timestamp=ts, on_delivery=cb)
            except BufferError:
                p.poll(0.01)
                continue
            if lo <= ts < hi:
                in_window += 1
            n += 1
        p.poll(0)
        time.sleep(0.001)
    left = p.flush(60)
    elapsed = time.time() - start
    print(json.dumps({"sent": n, "failed": failed[0] + left, "in_window": in_window,
                      "achieved_mb_per_s": round(n * VALUE_SIZE / 1e6 / elapsed, 2)}))


def cmd_latency(a, script):
    procs = []
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        return _latency(a, procs, script)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _latency(a, procs, script):
    from confluent_kafka import Producer
    err = None
    floor = Receiver(a.source_bootstrap, a.source_topic, a.partitions)
    dest = Receiver(a.dest_bootstrap, a.dest_topic, a.partitions)
    floor.start()
    dest.start()
    log = open(a.log, "ab") if a.log else subprocess.DEVNULL
    t0 = time.monotonic()
    rep = subprocess.Popen(a.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    procs.append(rep)
    # Ready: a probe from every partition is on the destination.
    probe = Producer({"bootstrap.servers": a.source_bootstrap, "log_level": 2, "linger.ms": 0})
    i = 0
    while len(dest.probes) < a.partitions:
        if rep.poll() is not None:
            err = "replicator exited with status %s before it was ready" % rep.returncode
            break
        if time.monotonic() - t0 > a.ready_timeout:
            err = "not ready after %ss (probes of %d of %d partitions on the destination)" % (
                a.ready_timeout, len(dest.probes), a.partitions)
            break
        for part in range(a.partitions):
            if part not in dest.probes:
                probe.produce(a.source_topic, key=b"probe-%d" % i, value=b"", partition=part)
        probe.flush(10)
        i += 1
        time.sleep(0.5)
    ready_s = time.monotonic() - t0
    res = {"label": a.label, "ready_s": round(ready_s, 2), "rate_mb_per_s": round(a.rate / 1e6, 2),
           "seconds": a.seconds, "warmup_s": a.warmup, "partitions": a.partitions}
    if err is None:
        start_at = time.time() + 0.5
        w_from, w_to = start_at + a.warmup, start_at + a.warmup + a.seconds
        loader = subprocess.Popen(
            [sys.executable, script, "steady-load", "--bootstrap", a.source_bootstrap,
             "--topic", a.source_topic, "--partitions", str(a.partitions), "--rate", str(a.rate),
             "--seconds", str(a.warmup + a.seconds), "--start-at", repr(start_at),
             "--window-from", repr(w_from), "--window-to", repr(w_to), "--codec", a.codec],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        procs.append(loader)
        # CPU of the replicator and the proxy over the window.
        time.sleep(max(0.0, w_from - time.time()))
        c0, px0 = proc_cpu(rep.pid), proc_cpu(a.proxy_pid) if a.proxy_pid else None
        time.sleep(max(0.0, w_to - time.time()))
        c1, px1 = proc_cpu(rep.pid), proc_cpu(a.proxy_pid) if a.proxy_pid else None
        out, _ = loader.communicate()
        try:
            load = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            load = {"in_window": None}
            err = "loader failed (exit %s)" % loader.returncode
        res["load"] = load
        want = load.get("in_window") or 0
        lo, hi = w_from * 1000, w_to * 1000
        deadline = time.monotonic() + a.drain_timeout
        while time.monotonic() < deadline and rep.poll() is None:
            if len(dest.window(lo, hi)) >= want and len(floor.window(lo, hi)) >= want:
                break
            time.sleep(0.2)
        if rep.poll() is not None and err is None:
            err = "replicator exited with status %s during the run" % rep.returncode
        fl, dl = floor.window(lo, hi), dest.window(lo, hi)
        res["floor"] = percentiles(fl)
        res["replicated"] = percentiles(dl)
        res["window_records"] = want
        res["missing"] = want - len(dl)
        res["floor_missing"] = want - len(fl)
        res["duplicates"] = dest.dups
        if res["missing"] > 0 and err is None:
            err = "%d of %d window records not on the destination after %ss" % (
                res["missing"], want, a.drain_timeout)
        f99, r99 = res["floor"]["p99_ms"], res["replicated"]["p99_ms"]
        res["added_p99_ms"] = round(r99 - f99, 1) if f99 is not None and r99 is not None else None
        if c0 is not None and c1 is not None:
            res["cpu_s_window"] = round(c1 - c0, 2)
            res["cpu_core_share"] = round((c1 - c0) / a.seconds, 3)
        if px0 is not None and px1 is not None:
            res["proxy_cpu_s"] = round(px1 - px0, 2)
            res["proxy_core_share"] = round((px1 - px0) / a.seconds, 3)
    res["peak_rss_mb"] = proc_hwm_mb(rep.pid) if rep.poll() is None else None
    if res["peak_rss_mb"] is not None:
        res["peak_rss_mb"] = round(res["peak_rss_mb"], 1)
    rep.send_signal(signal.SIGINT if a.stop_signal == "INT" else signal.SIGTERM)
    try:
        rep.wait(60)
    except subprocess.TimeoutExpired:
        rep.kill()
        rep.wait()
    floor.stop()
    dest.stop()
    res["error"] = err
    print(json.dumps(res))
    return 0 if err is None else 1


def add_parsers(sub):
    l = sub.add_parser("latency")
    l.add_argument("--label", required=True)
    l.add_argument("--source-bootstrap", required=True)
    l.add_argument("--source-topic", required=True)
    l.add_argument("--dest-bootstrap", required=True)
    l.add_argument("--dest-topic", required=True)
    l.add_argument("--partitions", type=int, default=8)
    l.add_argument("--rate", type=parse_rate, default=parse_rate("10MB/s"),
                   help="bytes/s of record values, e.g. 10MB/s")
    l.add_argument("--seconds", type=float, default=30, help="measured window")
    l.add_argument("--warmup", type=float, default=5, help="load before the window, not measured")
    l.add_argument("--codec", default="lz4")
    l.add_argument("--ready-timeout", type=float, default=180)
    l.add_argument("--drain-timeout", type=float, default=60)
    l.add_argument("--proxy-pid", type=int, default=0)
    l.add_argument("--stop-signal", choices=["INT", "TERM"], default="INT")
    l.add_argument("--log")
    l.add_argument("cmd", nargs="+")
    s = sub.add_parser("steady-load")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, required=True)
    s.add_argument("--rate", type=parse_rate, required=True, help="bytes/s, e.g. 10MB/s")
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--start-at", type=float, required=True)
    s.add_argument("--window-from", type=float, required=True)
    s.add_argument("--window-to", type=float, required=True)
    s.add_argument("--codec", default="lz4")
