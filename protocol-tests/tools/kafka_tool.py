#!/usr/bin/env python3
"""Independent Kafka client for strait's acceptance tests (confluent-kafka /
librdkafka, never strait itself).

Subcommands (run `kafka_tool.py SUB --help` for every option):

  create   --bootstrap B --topic T --partitions N [--rf 1] [--config k=v ...]
           Create a topic (an existing one is fine) and wait until every
           partition has a leader.
  load     --bootstrap B --topic T --count N [--codec C] [--value-size 100]
           [--seed 1] [--idempotent] [--linger-ms 5] [--batch-size 16384]
           [--keys 16] [--start-index 0] [--partitioner murmur2_random]
           Produce N deterministic records (see record_for()); prints
           "loaded N".
  txn      --bootstrap B --topic T --transactions K --per-txn M
           [--abort-every A] [--transactional-id ID] [--codec C]
           K transactions of M records, every A-th aborted; prints
           {"committed": n, "aborted": n} (counted in transactions).
  dump     --bootstrap B --topic T [--isolation read_uncommitted|read_committed]
           [--timeout 30]
           Every record from the log start up to the end offset taken when the
           dump starts (high watermark, or last stable offset for
           read_committed), one JSON line per record, partitions ascending,
           offsets ascending:
             {"p":0,"o":12,"k":b64|null,"v":b64|null,
              "h":[["name",b64|null],...],"ts":1700000000000,"tst":1}
           tst: 0 = not available, 1 = CreateTime, 2 = LogAppendTime.
  compare  --source B1 --source-topic T1 --dest B2 --dest-topic T2
           [--isolation ...] [--allow-duplicates] [--ignore-timestamps]
           Compare partition by partition, ignoring offsets. Exit 0 only if
           nothing is missing / reordered / mismatched (and no duplicates unless
           --allow-duplicates).
  count    --bootstrap B --topic T [--isolation ...]
           Per-partition record counts (records actually delivered to a
           consumer, so control records and aborted records are not counted).

Exit status: 0 success, 1 failure (message on stderr), 2 usage error.
"""

import argparse
import base64
import bisect
import json
import logging
import random
import sys
import time
import uuid

try:
    from confluent_kafka import (Consumer, KafkaError, KafkaException,
                                 Producer, TopicPartition, IsolationLevel)
    from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
except ImportError as e:  # pragma: no cover
    sys.stderr.write("kafka_tool: error: confluent_kafka is required (%s)\n" % e)
    sys.exit(1)

BASE_TS = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
ISOLATIONS = ["read_uncommitted", "read_committed"]


class ToolError(Exception):
    pass


def log(msg):
    sys.stderr.write("kafka_tool: %s\n" % msg)
    sys.stderr.flush()


def b64(b):
    return None if b is None else base64.b64encode(b).decode("ascii")


class _DedupLog(logging.Handler):
    """librdkafka log lines, each distinct (facility, text) shown once: an
    unreachable broker otherwise prints "Connection refused" every 50 ms."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = set()

    def emit(self, record):
        msg = record.getMessage()
        if msg in self.seen or len(self.seen) > 200:
            return
        self.seen.add(msg)
        sys.stderr.write("kafka_tool: librdkafka: %s\n" % msg)


_RDK_LOG = logging.getLogger("kafka_tool.librdkafka")
_RDK_LOG.addHandler(_DedupLog())
_RDK_LOG.setLevel(logging.WARNING)
_RDK_LOG.propagate = False


def common_conf(bootstrap):
    return {"bootstrap.servers": bootstrap, "logger": _RDK_LOG}


# ------------------------------------------------------------ metadata ----

def topic_partitions(client, topic, timeout=15.0):
    """Partition ids of topic, or raise ToolError. client: Producer,
    Consumer or AdminClient (all have list_topics)."""
    md = client.list_topics(topic, timeout=timeout)
    tm = md.topics.get(topic)
    if tm is None:
        raise ToolError("topic %r not in metadata" % topic)
    if tm.error is not None:
        raise ToolError("topic %r: %s" % (topic, tm.error.str()))
    return sorted(tm.partitions.keys())


# -------------------------------------------------------------- create ----

def cmd_create(a):
    admin = AdminClient(common_conf(a.bootstrap))
    cfg = {}
    for kv in a.config or []:
        if "=" not in kv:
            raise ToolError("--config expects k=v, got %r" % kv)
        k, v = kv.split("=", 1)
        cfg[k] = v
    nt = NewTopic(a.topic, num_partitions=a.partitions,
                  replication_factor=a.rf, config=cfg)
    futs = admin.create_topics([nt], operation_timeout=a.timeout,
                               request_timeout=a.timeout)
    existed = False
    try:
        futs[a.topic].result(timeout=a.timeout + 5)
    except KafkaException as e:
        err = e.args[0]
        if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise ToolError("create topic %r: %s" % (a.topic, err.str()))
        existed = True
    deadline = time.monotonic() + a.timeout
    last = "no metadata yet"
    while True:
        try:
            md = admin.list_topics(a.topic, timeout=5)
            tm = md.topics.get(a.topic)
            if tm is not None and tm.error is None and tm.partitions:
                parts = tm.partitions
                leaderless = [p for p, pm in parts.items() if pm.leader < 0]
                if existed and len(parts) != a.partitions:
                    log("warning: topic %r already exists with %d partitions "
                        "(asked for %d)" % (a.topic, len(parts), a.partitions))
                    if not leaderless:
                        break
                elif len(parts) == a.partitions and not leaderless:
                    break
                last = "%d/%d partitions, leaderless: %s" % (
                    len(parts), a.partitions, leaderless)
            elif tm is not None and tm.error is not None:
                last = tm.error.str()
        except KafkaException as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise ToolError("topic %r not ready after %ss: %s"
                            % (a.topic, a.timeout, last))
        time.sleep(0.2)
    print(json.dumps({"topic": a.topic, "partitions": len(parts),
                      "existed": existed}))


# ---------------------------------------------------------------- load ----

def record_for(i, seed, value_size, keys, null_keys=True):
    """Deterministic record number i -> (key, value, headers, timestamp).

    key:     b"k{i % keys}", None when i % 7 == 6 (such records go to
             partition (i // 7) % partitions, keyed ones by --partitioner)
    value:   b"{i}:" + pseudo-random bytes (seeded by seed and i), exactly
             value_size bytes; None (tombstone) when i % 11 == 10
    headers: [("h", b"1"), ("h", b"2"), ("idx", b"{i}")] -- duplicate name on
             purpose; the second "h" has a null value when i % 5 == 4;
             no headers at all when i % 13 == 12
    ts:      BASE_TS + i * 1000
    """
    key = None if (null_keys and i % 7 == 6) else ("k%d" % (i % keys)).encode()
    if i % 11 == 10:
        value = None
    else:
        prefix = ("%d:" % i).encode()
        if value_size <= len(prefix):
            value = prefix[:value_size]
        else:
            rnd = random.Random(seed * 1_000_003 + i)
            value = prefix + rnd.randbytes(value_size - len(prefix))
    if i % 13 == 12:
        headers = None
    else:
        headers = [("h", b"1"), ("h", None if i % 5 == 4 else b"2"),
                   ("idx", str(i).encode())]
    return key, value, headers, BASE_TS + i * 1000


class Delivery:
    def __init__(self):
        self.ok = 0
        self.failed = 0
        self.first_error = None

    def __call__(self, err, msg):
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = "%s (partition %s)" % (err.str(), msg.partition())
        else:
            self.ok += 1


def produce(p, topic, key, value, headers, ts, partition, cb):
    kw = {"key": key, "value": value, "timestamp": ts, "on_delivery": cb}
    if headers is not None:
        kw["headers"] = headers
    if partition is not None:
        kw["partition"] = partition
    while True:
        try:
            p.produce(topic, **kw)
            return
        except BufferError:
            p.poll(0.05)


def cmd_load(a):
    conf = common_conf(a.bootstrap)
    conf.update({
        "acks": "all",
        "compression.type": a.codec,
        "enable.idempotence": a.idempotent,
        "linger.ms": a.linger_ms,
        "batch.size": a.batch_size,
        "partitioner": a.partitioner,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": int(a.timeout * 1000),
    })
    p = Producer(conf)
    parts = topic_partitions(p, a.topic)
    cb = Delivery()
    for i in range(a.start_index, a.start_index + a.count):
        key, value, headers, ts = record_for(i, a.seed, a.value_size, a.keys, not a.no_null_keys)
        part = a.partition
        if part is None and key is None:
            # Explicit round robin over null-key records, a pure function of
            # i (null keys are i % 7 == 6) so split loads (--start-index)
            # place records exactly like one big load.
            part = parts[(i // 7) % len(parts)]
        produce(p, a.topic, key, value, headers, ts, part, cb)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(a.timeout)
    if left:
        raise ToolError("%d records still undelivered after %ss" % (left, a.timeout))
    if cb.failed:
        raise ToolError("%d of %d records failed: first error: %s"
                        % (cb.failed, a.count, cb.first_error))
    if cb.ok != a.count:
        raise ToolError("only %d of %d delivery reports" % (cb.ok, a.count))
    print("loaded %d" % a.count)


# ----------------------------------------------------------------- txn ----

def cmd_txn(a):
    tid = a.transactional_id or "kafka-tool-%s" % uuid.uuid4().hex
    conf = common_conf(a.bootstrap)
    conf.update({
        "transactional.id": tid,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": a.codec,
        "linger.ms": 5,
        "partitioner": a.partitioner,
        "transaction.timeout.ms": 60000,
    })
    p = Producer(conf)
    topic_partitions(p, a.topic)
    p.init_transactions(a.timeout)
    cb = Delivery()
    committed = aborted = 0
    for t in range(1, a.transactions + 1):
        abort = a.abort_every > 0 and t % a.abort_every == 0
        tag = "ABORTED" if abort else "COMMITTED"
        p.begin_transaction()
        for j in range(a.per_txn):
            value = ("%s-%d-%d" % (tag, t, j)).encode()
            produce(p, a.topic, ("k%d" % j).encode(), value,
                    [("txn", str(t).encode()), ("j", str(j).encode())],
                    int(time.time() * 1000), None, cb)
        if abort:
            # Flush first so the aborted records really land in the log
            # (abort_transaction would otherwise purge unsent ones) and
            # read_uncommitted readers can see them.
            p.flush(a.timeout)
            p.abort_transaction(a.timeout)
            aborted += 1
        else:
            p.commit_transaction(a.timeout)
            committed += 1
    p.flush(a.timeout)
    # Deliveries of aborted transactions may legitimately fail only when they
    # were purged; after the explicit flush they should not.
    if cb.failed:
        raise ToolError("%d records failed: %s" % (cb.failed, cb.first_error))
    print(json.dumps({"committed": committed, "aborted": aborted,
                      "per_txn": a.per_txn, "transactional_id": tid}))


# ---------------------------------------------------------------- read ----

def end_offsets(bootstrap, topic, parts, isolation, timeout):
    """{partition: (low, end)}; end is the high watermark, or the last stable
    offset for read_committed (ListOffsets with the isolation level)."""
    admin = AdminClient(common_conf(bootstrap))
    iso = (IsolationLevel.READ_COMMITTED if isolation == "read_committed"
           else IsolationLevel.READ_UNCOMMITTED)
    res = {}
    for spec_name, spec in (("low", OffsetSpec.earliest()),
                            ("end", OffsetSpec.latest())):
        req = {TopicPartition(topic, p): spec for p in parts}
        futs = admin.list_offsets(req, isolation_level=iso,
                                  request_timeout=timeout)
        for tp, f in futs.items():
            try:
                r = f.result(timeout=timeout)
            except KafkaException as e:
                raise ToolError("list_offsets %s %s[%d]: %s"
                                % (spec_name, topic, tp.partition, e))
            res.setdefault(tp.partition, {})[spec_name] = r.offset
    return {p: (v["low"], v["end"]) for p, v in res.items()}


def read_topic(bootstrap, topic, isolation="read_uncommitted", timeout=30.0,
               on_record=None):
    """Read every partition from its log start up to the end offset found at
    start. Calls on_record(msg) for each record, in offset order per
    partition (partitions interleaved). Returns {partition: (low, end)}.

    End detection: a partition is done when a delivered record has
    offset + 1 >= end, or a PARTITION_EOF event reports offset >= end, or
    position() >= end. Counting records would be wrong: control records
    (txn markers) and aborted records occupy offsets but are never delivered.
    """
    conf = common_conf(bootstrap)
    conf.update({
        "group.id": "kafka-tool-%s" % uuid.uuid4().hex,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
        "enable.partition.eof": True,
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760,
        "queued.max.messages.kbytes": 262144,
        # Short broker long-poll so the end of a partition (PARTITION_EOF)
        # is noticed quickly; consume() below also uses a short timeout
        # because it blocks until num_messages or the timeout.
        "fetch.wait.max.ms": 100,
    })
    c = Consumer(conf)
    try:
        parts = topic_partitions(c, topic, timeout=min(timeout, 15))
        ranges = end_offsets(bootstrap, topic, parts, isolation, min(timeout, 15))
        pending = {p for p, (lo, end) in ranges.items() if end > lo}
        if not pending:
            return ranges
        c.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(pending)])
        deadline = time.monotonic() + timeout
        last_check = time.monotonic()
        while pending:
            if time.monotonic() > deadline:
                raise ToolError(
                    "timeout after %ss; unfinished partitions: %s" % (timeout, ", ".join(
                        "%d (end %d)" % (p, ranges[p][1]) for p in sorted(pending))))
            msgs = c.consume(num_messages=1000, timeout=0.1)
            for m in msgs:
                err = m.error()
                p = m.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if p in pending and m.offset() >= ranges[p][1]:
                            pending.discard(p)
                        continue
                    if err.fatal() or not err.retriable():
                        raise ToolError("consume %s[%s]: %s" % (topic, p, err.str()))
                    log("warning: %s" % err.str())
                    continue
                if p not in pending:
                    continue
                o = m.offset()
                end = ranges[p][1]
                if o >= end:
                    pending.discard(p)
                    continue
                if on_record is not None:
                    on_record(m)
                if o + 1 >= end:
                    pending.discard(p)
            # Safety net (e.g. trailing control records with no EOF event).
            if pending and (not msgs or time.monotonic() - last_check > 1.0):
                last_check = time.monotonic()
                for tp in c.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= 0 and tp.offset >= ranges[tp.partition][1]:
                        pending.discard(tp.partition)
        return ranges
    finally:
        c.close()


def rec_tuple(m):
    """(partition, offset, key, value, headers-tuple, ts, tst)"""
    tst, ts = m.timestamp()
    h = m.headers()
    return (m.partition(), m.offset(), m.key(), m.value(),
            tuple(h) if h else (), ts, tst)


def read_records(bootstrap, topic, isolation, timeout):
    """{partition: [rec_tuple, ...]} in offset order; every partition of the
    topic present (possibly empty)."""
    out = {}
    ranges = read_topic(bootstrap, topic, isolation, timeout,
                        lambda m: out.setdefault(m.partition(), []).append(rec_tuple(m)))
    for p in ranges:
        out.setdefault(p, [])
    for recs in out.values():
        recs.sort(key=lambda r: r[1])  # already ordered; cheap safeguard
    return out


def rec_json(r):
    p, o, k, v, h, ts, tst = r
    return json.dumps({"p": p, "o": o, "k": b64(k), "v": b64(v),
                       "h": [[hk, b64(hv)] for hk, hv in h],
                       "ts": ts, "tst": tst}, separators=(",", ":"))


def cmd_dump(a):
    recs = read_records(a.bootstrap, a.topic, a.isolation, a.timeout)
    w = sys.stdout.write
    n = 0
    for p in sorted(recs):
        for r in recs[p]:
            w(rec_json(r))
            w("\n")
            n += 1
    sys.stdout.flush()
    log("dumped %d records from %d partitions" % (n, len(recs)))


def cmd_count(a):
    counts = {}
    ranges = read_topic(a.bootstrap, a.topic, a.isolation, a.timeout,
                        lambda m: counts.__setitem__(m.partition(),
                                                     counts.get(m.partition(), 0) + 1))
    out = {"topic": a.topic, "isolation": a.isolation,
           "partitions": {str(p): counts.get(p, 0) for p in sorted(ranges)},
           "offsets": {str(p): [lo, end] for p, (lo, end) in sorted(ranges.items())},
           "total": sum(counts.values())}
    print(json.dumps(out))


# ------------------------------------------------------------- compare ----

def describe(r):
    p, o, k, v, h, ts, tst = r
    def short(b):
        if b is None:
            return "null"
        s = repr(b)
        return s if len(s) <= 40 else s[:37] + "..."
    return "p%d@%d key=%s value=%s headers=%d ts=%d" % (p, o, short(k), short(v), len(h), ts)


def compare_partition(src, dst, ignore_ts, problems):
    """Walk dst in order against src (both lists of rec_tuple). Returns
    (missing, duplicates, order_violations, mismatched)."""
    def ident(r):
        return (r[2], r[3], r[4]) if ignore_ts else (r[2], r[3], r[4], r[5])

    index = {}
    for i, r in enumerate(src):
        index.setdefault(ident(r), []).append(i)  # ascending
    n = len(src)
    seen = bytearray(n)      # 1 once a source record has been matched
    skipped = set()          # source indices jumped over, not yet seen
    e = 0                    # next expected source index
    dup = order = mism = 0
    for d in dst:
        idn = ident(d)
        if e < n and ident(src[e]) == idn:
            seen[e] = 1
            e += 1
            continue
        cands = index.get(idn)
        if not cands:
            mism += 1
            problems.append("mismatched: dest %s matches no source record; expected next %s"
                            % (describe(d), describe(src[e]) if e < n else "nothing (source exhausted)"))
            continue
        late = next((j for j in cands if j in skipped), None)
        if late is not None:
            skipped.discard(late)
            seen[late] = 1
            order += 1
            problems.append("order violation: dest %s is source offset %d, which was "
                            "skipped earlier (expected next %s)"
                            % (describe(d), src[late][1],
                               describe(src[e]) if e < n else "nothing"))
            continue
        k = bisect.bisect_left(cands, e)
        if k < len(cands):          # a later source record: jump over e..j-1
            j = cands[k]
            for s in range(e, j):
                if not seen[s]:
                    skipped.add(s)
            seen[j] = 1
            e = j + 1
            continue
        dup += 1                    # only earlier, already seen, copies exist
        problems.append("duplicate: dest %s repeats source offset %d"
                        % (describe(d), src[cands[-1]][1]))
    missing = len(skipped) + sum(1 for s in range(e, n) if not seen[s])
    if missing:
        first = min(list(skipped) + ([e] if e < n else []))
        problems.append("missing: %d source records never seen in destination, first %s"
                        % (missing, describe(src[first])))
    return missing, dup, order, mism


def cmd_compare(a):
    t0 = time.monotonic()
    src = read_records(a.source, a.source_topic, a.isolation, a.timeout)
    t1 = time.monotonic()
    dst = read_records(a.dest, a.dest_topic, a.isolation, a.timeout)
    t2 = time.monotonic()
    res = {"partitions": len(src), "dest_partitions": len(dst),
           "source_records": sum(len(v) for v in src.values()),
           "dest_records": sum(len(v) for v in dst.values()),
           "missing": 0, "duplicates": 0, "order_violations": 0, "mismatched": 0}
    problems = []
    if len(src) != len(dst):
        problems.append("partition count differs: source %d, dest %d" % (len(src), len(dst)))
    per = {}
    for p in sorted(set(src) | set(dst)):
        pp = []
        m, d, o, x = compare_partition(src.get(p, []), dst.get(p, []),
                                       a.ignore_timestamps, pp)
        res["missing"] += m
        res["duplicates"] += d
        res["order_violations"] += o
        res["mismatched"] += x
        if pp:
            per[str(p)] = {"missing": m, "duplicates": d, "order_violations": o,
                           "mismatched": x}
            problems.extend("partition %d: %s" % (p, s) for s in pp[:5])
    res["first_problem"] = problems[0] if problems else None
    res["problems"] = problems[:10]
    res["problem_partitions"] = per
    res["read_seconds"] = [round(t1 - t0, 3), round(t2 - t1, 3)]
    ok = (res["missing"] == 0 and res["order_violations"] == 0
          and res["mismatched"] == 0 and len(src) == len(dst)
          and (res["duplicates"] == 0 or a.allow_duplicates))
    res["ok"] = ok
    print(json.dumps(res))
    return 0 if ok else 1


# -------------------------------------------------------------- delete ----

def cmd_delete(a):
    """Deletes a topic and waits until the cluster's metadata no longer lists it."""
    admin = AdminClient(common_conf(a.bootstrap))
    futs = admin.delete_topics([a.topic], operation_timeout=a.timeout,
                               request_timeout=a.timeout)
    try:
        futs[a.topic].result(timeout=a.timeout + 5)
    except KafkaException as e:
        raise ToolError("delete topic %r: %s" % (a.topic, e.args[0].str()))
    deadline = time.monotonic() + a.timeout
    while a.topic in admin.list_topics(timeout=5).topics:
        if time.monotonic() > deadline:
            raise ToolError("topic %r still listed %.0f s after its deletion" % (a.topic, a.timeout))
        time.sleep(0.2)
    print(json.dumps({"deleted": a.topic}))
    return 0


# ---------------------------------------------------------- topic-info ----

def cmd_topic_info(a):
    """Partition count and explicitly set (dynamic topic) configs of a topic."""
    from confluent_kafka.admin import ConfigResource, ConfigSource
    admin = AdminClient(common_conf(a.bootstrap))
    parts = topic_partitions(admin, a.topic, timeout=a.timeout)
    res = ConfigResource(ConfigResource.Type.TOPIC, a.topic)
    entries = admin.describe_configs([res], request_timeout=a.timeout)[res].result(timeout=a.timeout)
    configs = {k: e.value for k, e in entries.items()
               if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}
    print(json.dumps({"topic": a.topic, "partitions": len(parts), "configs": configs}, sort_keys=True))
    return 0


# ---------------------------------------------------------------- main ----

def main(argv=None):
    ap = argparse.ArgumentParser(prog="kafka_tool.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, help_):
        s = sub.add_parser(name, help=help_)
        return s

    s = add("create", "create a topic and wait for leaders")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, required=True)
    s.add_argument("--rf", type=int, default=1)
    s.add_argument("--config", action="append", metavar="K=V")
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(fn=cmd_create)

    s = add("delete", "delete a topic and wait until it is gone")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(fn=cmd_delete)

    s = add("load", "produce deterministic records")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--codec", choices=CODECS, default="none")
    s.add_argument("--value-size", type=int, default=100)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--idempotent", action="store_true")
    s.add_argument("--linger-ms", type=int, default=5)
    s.add_argument("--batch-size", type=int, default=16384)
    s.add_argument("--keys", type=int, default=16)
    s.add_argument("--start-index", type=int, default=0)
    s.add_argument("--partition", type=int,
                   help="write every record to this partition (default: by key; null keys round robin)")
    s.add_argument("--no-null-keys", action="store_true",
                   help="every record gets a key (compacted topics refuse null keys)")
    s.add_argument("--partitioner", default="murmur2_random",
                   help="librdkafka partitioner for keyed records "
                        "(murmur2_random = Java client compatible; "
                        "librdkafka's own default is consistent_random)")
    s.add_argument("--timeout", type=float, default=120.0)
    s.set_defaults(fn=cmd_load)

    s = add("txn", "transactional producer with some aborted transactions")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--transactions", type=int, required=True)
    s.add_argument("--per-txn", type=int, required=True)
    s.add_argument("--abort-every", type=int, default=0,
                   help="abort transaction t (1-based) when t %% A == 0; 0 = never")
    s.add_argument("--transactional-id")
    s.add_argument("--codec", choices=CODECS, default="none")
    s.add_argument("--partitioner", default="murmur2_random")
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(fn=cmd_txn)

    for name, fn, help_ in (("dump", cmd_dump, "dump a topic as JSON lines"),
                            ("count", cmd_count, "per-partition record counts")):
        s = add(name, help_)
        s.add_argument("--bootstrap", required=True)
        s.add_argument("--topic", required=True)
        s.add_argument("--isolation", choices=ISOLATIONS, default="read_uncommitted")
        s.add_argument("--timeout", type=float, default=30.0)
        s.set_defaults(fn=fn)

    s = add("topic-info", "partition count and explicit configs of a topic")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--timeout", type=float, default=30.0)
    s.set_defaults(fn=cmd_topic_info)

    s = add("compare", "compare source and destination topics")
    s.add_argument("--source", required=True)
    s.add_argument("--source-topic", required=True)
    s.add_argument("--dest", required=True)
    s.add_argument("--dest-topic", required=True)
    s.add_argument("--isolation", choices=ISOLATIONS, default="read_uncommitted")
    s.add_argument("--allow-duplicates", action="store_true")
    s.add_argument("--ignore-timestamps", action="store_true")
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(fn=cmd_compare)

    a = ap.parse_args(argv)
    try:
        rc = a.fn(a)
    except ToolError as e:
        log("error: %s" % e)
        return 1
    except KafkaException as e:
        log("error: %s" % (e.args[0].str() if e.args and hasattr(e.args[0], "str") else e))
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
