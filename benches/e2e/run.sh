#!/usr/bin/env bash
# End-to-end comparison: strait vs MirrorMaker 2 (dedicated mode) vs a bare
# TCP relay floor, on the same two local single-node Kafka 4.1.1 clusters and
# the same preloaded source topics. See benches/e2e/README.md.
#
#   bash benches/e2e/run.sh [--quick] [--workloads a,b,c,d] [--tools strait,mm2,floor]
#   bash benches/e2e/run.sh --workloads d --tools strait-scale     # scale-out only
#
#   --quick      200 MB for workloads a/b (default 1 GB); c and d are the same size
#   --workloads  subset of a (1 KB lz4, 8 partitions), b (same, uncompressed),
#                c (1-record batches), d (1,000 partitions)
#   --tools      subset of strait, strait-eos (exactly_once = true; completion
#                read at the last stable offset), strait-prefix (rename =
#                "prefix": no provenance check, the baseline of its cost),
#                strait-2flows (two flows of the topic in one process, for
#                memory against one), mm2, floor, strait-scale (scale-out,
#                meant for workload d: (a) the flow run by one process and by
#                two (instance ids s1, s2) into fresh topics, CPU/GB summed
#                over both, peak RSS per process, ratio two/one; (b) in the
#                first round only, takeover after SIGKILL of one of two
#                members, E2E_TAKEOVER_REPEATS times, against
#                session_timeout_ms (10000) + 2 s; not in the default set)
#   --repeat N   run the tools N times per workload, interleaved (tool order
#                rotates each round; MM2 runs in the first round only, except
#                in --wan and --latency, where it runs every round); the
#                report shows medians
#
#   bash benches/e2e/run.sh --wan [--wan-rtts 0,50,150] [--wan-side source|destination]
#   --wan        throughput over an emulated WAN: strait and MM2 reach the
#                chosen cluster only through the delaying proxy
#                (protocol-tests/tools/fault_proxy.rs, RTT/2 added per
#                direction and frame; the cluster advertises the proxy's port),
#                for each RTT; default workloads a,d and tools strait,mm2.
#                The completion poller reads the destination directly.
#   bash benches/e2e/run.sh --latency [--rate 10MB/s] [--seconds 30] [--wan-rtts 0,50,150]
#   --latency    end-to-end latency under a steady load of 1 KB records at
#                --rate into a fresh 8-partition topic per run; a receiver on
#                the destination and one on the source (the floor) in the
#                same run; p50/p99/p99.9/max and the added p99, per RTT
#   --wan-rtts   RTTs in ms (default 0,50,150); --wan-side (default source)
#   --rate, --seconds  the latency mode's load (bytes/s, 10MB/s) and measured
#                window (30 s, after E2E_LAT_WARMUP=5 s of warm-up)
#
# Results: benches/e2e/results/latest.{md,json} (+ a timestamped copy), table
# printed at the end. Work dir (clusters, logs, configs): target/e2e/work
# (kept after the run for inspection; removed at the start of the next run).
#
# Env: STRAIT_CACHE_DIR (jar cache, default ~/.cache/strait),
#      STRAIT_EXTRA_CONFIG (extra top-level strait.toml lines, e.g. a smaller
#      max_buffered_bytes for the memory figure),
#      KAFKA_JVM_OPTS (broker JVM flags; default here -XX:TieredStopAtLevel=4,
#      i.e. full C2 JIT, overriding the harness's C1-only default),
#      E2E_TIMEOUT (s per replicator run, default 900), MM2_MAX_TASKS (cap on
#      MM2 tasks.max, default 8), E2E_POLL (destination poll interval s, 0.5),
#      E2E_TAKEOVER_REPEATS (kills in the takeover measurement, default 5; 0
#      skips it), E2E_TRICKLE_RATE (records/s produced during it, default 200),
#      E2E_LAT_WARMUP (s of load before the latency window, default 5),
#      E2E_LAT_BROKER_WARMUP (s of the load into a scratch topic on each
#      cluster before the first latency run, default 20; 0 skips it),
#      E2E_RECORDS (records of workloads a and b, overriding 1,000,000 /
#      --quick 200,000), E2E_D_RECORDS (of workload d, default 200,000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
E2E="$ROOT/benches/e2e"
HARNESS="$ROOT/protocol-tests/harness/kafka.sh"
KTOOL="$ROOT/protocol-tests/tools/kafka_tool.py"
VERSION=4.1.1
QUICK=0
WORKLOADS="a,b,c,d"
TOOLS="strait,mm2,floor"
REPEAT=1
ROUND=1
MODE=""          # "", wan or latency
RTTS="0,50,150"
WAN_SIDE=source
LAT_RATE=10MB/s
LAT_SECONDS=30
WORKLOADS_SET=0
TOOLS_SET=0
while (($#)); do
  case $1 in
    --quick) QUICK=1; shift ;;
    --workloads) WORKLOADS=$2; WORKLOADS_SET=1; shift 2 ;;
    --tools) TOOLS=$2; TOOLS_SET=1; shift 2 ;;
    --wan) MODE=wan; shift ;;
    --latency) MODE=latency; shift ;;
    --wan-rtts) RTTS=$2; shift 2 ;;
    --wan-side) WAN_SIDE=$2; shift 2 ;;
    --rate) LAT_RATE=$2; shift 2 ;;
    --seconds) LAT_SECONDS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case $WAN_SIDE in source|destination) ;; *) echo "run.sh: --wan-side source|destination" >&2; exit 2 ;; esac
if [[ -n $MODE ]]; then
  ((WORKLOADS_SET)) || WORKLOADS="a,d"
  ((TOOLS_SET)) || TOOLS="strait,mm2"
  for tool in ${TOOLS//,/ }; do
    [[ $tool == strait || $tool == mm2 ]] \
      || { echo "run.sh: --$MODE runs the tools strait and mm2, not $tool" >&2; exit 2; }
  done
fi
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
LAT_WARMUP=${E2E_LAT_WARMUP:-5}
LAT_BROKER_WARMUP=${E2E_LAT_BROKER_WARMUP:-20}

export KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:--XX:TieredStopAtLevel=4}"
TIMEOUT=${E2E_TIMEOUT:-900}
MM2_MAX_TASKS=${MM2_MAX_TASKS:-8}
POLL=${E2E_POLL:-0.5}
TAKEOVER_REPEATS=${E2E_TAKEOVER_REPEATS:-5}
TRICKLE_RATE=${E2E_TRICKLE_RATE:-200}
# Scale-out runs write the default session timeout into their config, so the
# takeover figure is the default behaviour.
SESSION_MS=10000
WORK="$ROOT/target/e2e/work"
RES="$E2E/results"
RUNID=$(date +%s)
T_START=$SECONDS

log() { echo "[e2e $(date +%H:%M:%S)] $*" >&2; }

# ------------------------------------------------------------- cleanup ----
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n ${PROXY_PID:-} ]]; then kill "$PROXY_PID" 2>/dev/null || true; fi
  for d in "$WORK/A" "$WORK/B"; do
    if [[ -f $d/nodes ]]; then bash "$HARNESS" stop "$d" >/dev/null 2>&1 || true; fi
  done
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- build ----
log "building strait (cargo build --release --locked) and the floor relay"
cargo build --release --locked >&2
if [[ -n $MODE ]]; then
  log "building the delaying proxy (cargo build --release --locked --example fault_proxy)"
  cargo build --release --locked --example fault_proxy >&2
fi
# STRAIT_BIN: measure another build of strait (the static musl binary, say).
STRAIT_BIN=${STRAIT_BIN:-$ROOT/target/release/strait}
log "strait binary: $STRAIT_BIN"

mkdir -p "$ROOT/target/e2e"
rustc -O --edition 2021 "$E2E/floor.rs" -o "$ROOT/target/e2e/floor"
bash "$HARNESS" fetch "$VERSION" >/dev/null
MM2LIBS=""
if has_tool mm2; then MM2LIBS=$(bash "$E2E/mm2_fetch.sh" "$VERSION"); fi

# ------------------------------------------------------------ clusters ----
for d in "$WORK/A" "$WORK/B"; do
  if [[ -f $d/nodes ]]; then bash "$HARNESS" stop "$d" >/dev/null 2>&1 || true; fi
done
rm -rf "$WORK"; mkdir -p "$WORK" "$RES"
log "starting clusters A and B (Kafka $VERSION, heap 1g, KAFKA_JVM_OPTS=$KAFKA_JVM_OPTS)"
# WAN and latency modes: the cluster on the WAN side gets a second listener
# that advertises the proxy's port, so a client bootstrapping through the
# proxy stays behind it (metadata names the proxy). Everything else (loader,
# poller, receivers) uses the PLAINTEXT listener directly.
PX_A=(); PX_B=()
if [[ -n $MODE ]]; then
  if [[ $WAN_SIDE == source ]]; then PX_A=(--listener PROXIED:PLAINTEXT:proxied)
  else PX_B=(--listener PROXIED:PLAINTEXT:proxied); fi
fi
A=$(bash "$HARNESS" start "$WORK/A" --version "$VERSION" --heap 1g --owner-pid $$ "${PX_A[@]}")
B=$(bash "$HARNESS" start "$WORK/B" --version "$VERSION" --heap 1g --owner-pid $$ "${PX_B[@]}")
BROKER_PIDS="$(awk '{print $4}' "$WORK/A/nodes"),$(awk '{print $4}' "$WORK/B/nodes")"
log "A=$A B=$B broker pids $BROKER_PIDS"
# RA, RB: how the replicator reaches A and B.
RA=$A RB=$B
PROXY_PID=""
if [[ -n $MODE ]]; then
  if [[ $WAN_SIDE == source ]]; then pdir=$WORK/A; else pdir=$WORK/B; fi
  read -r _ _ pbound padv <"$pdir/listeners"
  mkfifo "$WORK/proxy.in"
  # fd 7 holds the proxy's stdin open (it exits when stdin closes).
  exec 7<>"$WORK/proxy.in"
  "$ROOT/target/release/examples/fault_proxy" "$padv:$pbound" <&7 >"$WORK/proxy.out" 2>&1 &
  PROXY_PID=$!
  if [[ $WAN_SIDE == source ]]; then RA=127.0.0.1:$padv; else RB=127.0.0.1:$padv; fi
  log "proxy pid $PROXY_PID: 127.0.0.1:$padv -> $pbound ($WAN_SIDE side); replicator uses A=$RA B=$RB"
fi
# Sets the proxy's added round trip (RTT/2 per direction).
set_rtt() {
  RTT=$1
  echo "latency $((RTT / 2))" >&7
  log "proxy: RTT $RTT ms (latency $((RTT / 2)) ms per direction)"
}
RTT=""

RESULTS="$WORK/results.jsonl"; : >"$RESULTS"

# Append one result line with workload/tool fields merged in.
# The proxy's frame counter (its `stats` line), 0 if it does not answer.
proxy_frames() {
  local n0 n i
  n0=$(grep -c frames= "$WORK/proxy.out" || true)
  echo stats >&7
  for ((i = 0; i < 50; i++)); do
    n=$(grep -c frames= "$WORK/proxy.out" || true)
    if ((n > n0)); then
      grep frames= "$WORK/proxy.out" | tail -n1 | sed 's/.*frames=\([0-9]*\).*/\1/'
      return
    fi
    sleep 0.1
  done
  echo 0
}
PX_LAST=0

# In WAN and latency modes also mode, rtt_ms, wan_side, round and
# proxy_frames: the frames the proxy forwarded since the previous result (only
# the replicator's traffic passes it, so: this run's).
emit() { # WORKLOAD TOOL JSON
  local frames=0 f
  if [[ -n $MODE ]]; then f=$(proxy_frames); frames=$((f - PX_LAST)); PX_LAST=$f; fi
  python3 -c '
import json, sys
r = json.loads(sys.argv[3]); r["workload"] = sys.argv[1]; r["tool"] = sys.argv[2]
if sys.argv[4]:
    r.update(mode=sys.argv[4], rtt_ms=int(sys.argv[5]), wan_side=sys.argv[6], round=int(sys.argv[7]),
             proxy_frames=int(sys.argv[8]))
print(json.dumps(r))' "$1" "$2" "$3" "$MODE" "${RTT:-0}" "$WAN_SIDE" "$ROUND" "$frames" >>"$RESULTS"
}

# Destination-name tag of a run: the RTT in WAN/latency modes, the round from 2 on.
run_tag() {
  local tag=""
  if [[ -n $MODE ]]; then tag="w$RTT"; fi
  if ((ROUND > 1)); then tag="${tag}r$ROUND"; fi
  echo "$tag"
}

# ------------------------------------------------------------ workloads ----
# Sets W_DESC, PARTS, COUNT, CODEC, LINGER, BATCH for workload $1.
workload() {
  local big=${E2E_RECORDS:-$((QUICK ? 200000 : 1000000))}
  case $1 in
    a) W_DESC="1 KB records, lz4, 8 partitions"; PARTS=8; COUNT=$big; CODEC=lz4; LINGER=20; BATCH=262144 ;;
    b) W_DESC="1 KB records, uncompressed, 8 partitions"; PARTS=8; COUNT=$big; CODEC=none; LINGER=20; BATCH=262144 ;;
    c) W_DESC="1-record batches, 1 KB, uncompressed, 8 partitions"; PARTS=8; COUNT=100000; CODEC=none; LINGER=0; BATCH=1 ;;
    d) W_DESC="1 KB records, lz4, 1000 partitions"; PARTS=1000; COUNT=${E2E_D_RECORDS:-200000}; CODEC=lz4; LINGER=20; BATCH=262144 ;;
    *) echo "run.sh: unknown workload $1" >&2; exit 2 ;;
  esac
}

run_strait() { # W TOPIC [LABEL EXTRA_CONFIG ISOLATION RENAME]
  local w=$1 t=$2 label=${3:-strait} iso=${5:-read_uncommitted}
  write_strait_cfg "$@"
  local dest=$S_DEST cfg=$S_CFG out
  log "[$w] $label (round $ROUND${RTT:+, RTT $RTT ms}) -> $dest"
  out=$(python3 "$E2E/measure.py" run --label "$label" --dest-bootstrap "$B" \
    --dest-topic "$dest" --partitions "$PARTS" --expect "$COUNT" \
    --source-bytes "$SRC_BYTES" --broker-pids "$BROKER_PIDS" --timeout "$TIMEOUT" \
    --poll "$POLL" --isolation "$iso" --stop-signal INT --log "$WORK/$label-$w.log" \
    --proxy-pid "${PROXY_PID:-0}" \
    -- "$STRAIT_BIN" run --config "$cfg" --progress 0) || true
  log "[$w] $label: $out"
  [[ -n $out ]] && emit "$w" "$label" "$out"
  return 0
}

# Writes the flow's config for run_strait (and the latency mode); sets S_CFG
# and S_DEST. The replicator reaches the clusters as RA and RB.
write_strait_cfg() { # W TOPIC [LABEL EXTRA_CONFIG ISOLATION RENAME]
  local w=$1 t=$2 label=${3:-strait} extra=${4:-}
  # Each run writes a fresh destination topic (the measure counts its offsets).
  local dlabel=$label tag
  tag=$(run_tag)
  if [[ -n $tag ]]; then dlabel=$label-$tag; fi
  # rename = "prefix" names it "<alias>.<topic>": the same name, as alias = dlabel.
  local rename=${6:-$dlabel.\{topic\}}
  S_DEST="$dlabel.$t"
  S_CFG="$WORK/$dlabel-$1.toml"
  cat >"$S_CFG" <<EOF
name = "bench-$dlabel-$w-$RUNID"
topics = ["$t"]
rename = "$rename"
refresh_interval_ms = 1000
checkpoint_interval_ms = 1000
$extra
${STRAIT_EXTRA_CONFIG:-}
[source]
alias = "$dlabel"
bootstrap_servers = "$RA"
[destination]
bootstrap_servers = "$RB"
EOF
}

# Two flows of the same source topic in one process (into two destination
# topics on B), sharing one memory budget: its peak RSS against one flow's.
# Complete when both destination topics hold every record.
run_strait_2flows() { # W TOPIC
  local w=$1 t=$2 label=strait-2flows
  local dlabel=$label
  if ((ROUND > 1)); then dlabel=$label-r$ROUND; fi
  local cfg="$WORK/$dlabel-$1.toml" out
  cat >"$cfg" <<EOF
topics = ["$t"]
refresh_interval_ms = 1000
checkpoint_interval_ms = 1000
${STRAIT_EXTRA_CONFIG:-}
[clusters.a]
bootstrap_servers = "$A"
[clusters.b]
bootstrap_servers = "$B"
[[flows]]
name = "bench-$dlabel-1-$w-$RUNID"
source = "a"
destination = "b"
rename = "$dlabel-1.{topic}"
[[flows]]
name = "bench-$dlabel-2-$w-$RUNID"
source = "a"
destination = "b"
rename = "$dlabel-2.{topic}"
EOF
  log "[$w] $label (round $ROUND) -> $dlabel-1.$t, $dlabel-2.$t"
  out=$(python3 "$E2E/measure.py" run --label "$label" --dest-bootstrap "$B" \
    --dest-topic "$dlabel-1.$t,$dlabel-2.$t" --partitions "$PARTS" --expect "$COUNT" \
    --source-bytes "$SRC_BYTES" --broker-pids "$BROKER_PIDS" --timeout "$TIMEOUT" \
    --poll "$POLL" --stop-signal INT --log "$WORK/$dlabel-$w.log" \
    -- "$STRAIT_BIN" run --config "$cfg" --progress 0) || true
  log "[$w] $label: $out"
  [[ -n $out ]] && emit "$w" "$label" "$out"
}

# Scale-out (a): the flow run by one process (instance id s1) and by two (s1,
# s2; same config, one replication group), each pair of runs into fresh
# destination topics and a fresh group. CPU is summed over the processes, peak
# RSS is per process; complete when the destination holds every record. The
# order of the two alternates by round.
run_strait_scale() { # W TOPIC
  local w=$1 t=$2 n order label dlabel ids cfg out
  if ((ROUND % 2)); then order="1 2"; else order="2 1"; fi
  for n in $order; do
    label=strait-scale-${n}p
    dlabel=$label
    if ((ROUND > 1)); then dlabel=$label-r$ROUND; fi
    if ((n == 1)); then ids=s1; else ids=s1,s2; fi
    cfg="$WORK/$dlabel-$w.toml"
    cat >"$cfg" <<EOF
name = "bench-$dlabel-$w-$RUNID"
topics = ["$t"]
rename = "$dlabel.{topic}"
refresh_interval_ms = 1000
checkpoint_interval_ms = 1000
session_timeout_ms = $SESSION_MS
${STRAIT_EXTRA_CONFIG:-}
[source]
alias = "$dlabel"
bootstrap_servers = "$A"
[destination]
bootstrap_servers = "$B"
EOF
    log "[$w] $label (round $ROUND, instances $ids) -> $dlabel.$t"
    out=$(python3 "$E2E/measure.py" run --label "$label" --dest-bootstrap "$B" \
      --dest-topic "$dlabel.$t" --partitions "$PARTS" --expect "$COUNT" \
      --source-bytes "$SRC_BYTES" --broker-pids "$BROKER_PIDS" --timeout "$TIMEOUT" \
      --poll "$POLL" --stop-signal INT --instances "$ids" --log "$WORK/$dlabel-$w.log" \
      -- "$STRAIT_BIN" run --config "$cfg" --progress 0) || true
    log "[$w] $label: $out"
    [[ -n $out ]] && emit "$w" "$label" "$out"
  done
  return 0
}

# Scale-out (b): takeover after SIGKILL. Two members (s1, s2) replicate a
# trickle (E2E_TRICKLE_RATE records/s) from their own source topic with the
# workload's partition count (the workload's topic stays as loaded for the
# other tools); measure.py takeover kills one E2E_TAKEOVER_REPEATS times and
# restarts it in between. See benches/e2e/README.md for the definitions.
run_strait_takeover() { # W
  local w=$1
  local ts="e2e-$w-trickle-$RUNID" label=strait-takeover cfg out
  cfg="$WORK/$label-$w.toml"
  log "[$w] $label: creating $ts ($PARTS partitions)"
  python3 "$KTOOL" create --bootstrap "$A" --topic "$ts" --partitions "$PARTS" \
    --config retention.ms=-1 >&2
  cat >"$cfg" <<EOF
name = "bench-$label-$w-$RUNID"
topics = ["$ts"]
rename = "$label.{topic}"
refresh_interval_ms = 1000
checkpoint_interval_ms = 1000
session_timeout_ms = $SESSION_MS
${STRAIT_EXTRA_CONFIG:-}
[source]
alias = "$label"
bootstrap_servers = "$A"
[destination]
bootstrap_servers = "$B"
EOF
  log "[$w] $label: $TAKEOVER_REPEATS kills, session_timeout_ms = $SESSION_MS, trickle $TRICKLE_RATE records/s"
  out=$(python3 "$E2E/measure.py" takeover --strait "$STRAIT_BIN" \
    --config "$cfg" --source-bootstrap "$A" --source-topic "$ts" --dest-bootstrap "$B" \
    --dest-topic "$label.$ts" --partitions "$PARTS" --codec "$CODEC" --instances s1,s2 \
    --repeats "$TAKEOVER_REPEATS" --session-timeout-ms "$SESSION_MS" \
    --trickle-rate "$TRICKLE_RATE" --log "$WORK/$label-$w.log") || true
  log "[$w] $label: $out"
  [[ -n $out ]] && emit "$w" "$label" "$out"
  return 0
}

# MirrorMaker 2 settings (dedicated mode). Producer/consumer overrides are
# cluster-scoped client configs: B.producer.* reaches the worker producer that
# writes to B, A.consumer.* reaches MirrorSourceTask's consumer on A.
run_mm2() { # W TOPIC
  local w=$1 t=$2 out
  write_mm2_props "$w" "$t"
  log "[$w] MirrorMaker 2 (tasks.max=$M_TASKS, round $ROUND${RTT:+, RTT $RTT ms}) -> $M_DEST"
  out=$(python3 "$E2E/measure.py" run --label mm2 --dest-bootstrap "$B" \
    --dest-topic "$M_DEST" --partitions "$PARTS" --expect "$COUNT" \
    --source-bytes "$SRC_BYTES" --broker-pids "$BROKER_PIDS" --timeout "$TIMEOUT" \
    --poll "$POLL" --stop-signal TERM --log "$M_LOG.out" --proxy-pid "${PROXY_PID:-0}" \
    -- "${MM2_CMD[@]}") || true
  log "[$w] mm2: $out"
  [[ -n $out ]] && emit "$w" mm2 "$out"
  return 0
}

# Writes MM2's properties and log config for one run; sets M_PROPS, M_DEST,
# M_LOG (path without extension), M_TASKS and MM2_CMD. The source cluster's
# alias names the destination topic (<alias>.<topic>), so it carries the run
# tag (RTT, round) for a fresh topic per run; the Connect group and internal
# topics are fresh per run too. The replicator reaches the clusters as RA, RB.
write_mm2_props() { # W TOPIC
  local w=$1 t=$2 tag sa fetch_max=16777216 batch=262144
  tag=$(run_tag)
  sa=A$tag
  M_DEST="$sa.$t"
  M_PROPS="$WORK/mm2-$w${tag:+-$tag}.properties"
  M_LOG="$WORK/mm2-$w${tag:+-$tag}"
  M_TASKS=$(( PARTS < MM2_MAX_TASKS ? PARTS : MM2_MAX_TASKS ))
  # WAN and latency modes: the vendors' high-volume / WAN values (README).
  if [[ -n $MODE ]]; then fetch_max=52428800; batch=327680; fi
  cat >"$M_PROPS" <<EOF
clusters = $sa, B
$sa.bootstrap.servers = $RA
B.bootstrap.servers = $RB
$sa->B.enabled = true
B->$sa.enabled = false
$sa->B.topics = $t
$sa->B.groups.exclude = .*
tasks.max = $M_TASKS

# replication factor 1 everywhere (single-node clusters)
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
config.storage.replication.factor = 1
status.storage.replication.factor = 1
# fresh Connect group and internal topics per run
B.group.id = mm2-$w-$RUNID${tag:+-$tag}
offset.storage.topic = mm2-offsets-$w-$RUNID${tag:+-$tag}
config.storage.topic = mm2-configs-$w-$RUNID${tag:+-$tag}
status.storage.topic = mm2-status-$w-$RUNID${tag:+-$tag}

# side features off or slowed down. (With offset syncs and checkpoints off,
# MM2 logs "Failed to configure MirrorCheckpointConnector ... can't run
# without offset syncs" once: expected, the source connector is unaffected.
# offset-syncs.* settings must then be absent, or the source connector is
# rejected too.)
emit.heartbeats.enabled = false
emit.checkpoints.enabled = false
emit.offset-syncs.enabled = false
sync.group.offsets.enabled = false
sync.topic.acls.enabled = false
refresh.topics.interval.seconds = 600
refresh.groups.interval.seconds = 600
sync.topic.configs.interval.seconds = 600
# source offsets committed every second (strait: checkpoint_interval_ms = 1000)
B.offset.flush.interval.ms = 1000

# producer to B: keep the data's codec; 256 KiB batches (320 KiB in WAN and
# latency modes), 10 ms linger; idempotent with 5 in flight (Connect's
# default is 1 in flight; strait keeps up to 5 per partition, idempotently)
B.producer.compression.type = $MM2_CODEC
B.producer.batch.size = $batch
B.producer.linger.ms = 10
B.producer.enable.idempotence = true
B.producer.max.in.flight.requests.per.connection = 5
B.producer.acks = all
# consumer on the source: fetch sizes as strait's defaults (16 MiB / 4 MiB
# per partition; 50 MiB per request in WAN and latency modes)
$sa.consumer.max.poll.records = 2000
$sa.consumer.fetch.max.bytes = $fetch_max
$sa.consumer.max.partition.fetch.bytes = 4194304
EOF
  if [[ -n $MODE ]]; then
    cat >>"$M_PROPS" <<EOF

# WAN tuning, as the vendors advise for high-latency links (README: MM2 WAN
# settings): socket buffers left to the OS's autotuning (-1) instead of the
# clients' 32-128 KiB, a larger producer buffer and flush timeout; fetch
# waits at their defaults, written out.
$sa.consumer.receive.buffer.bytes = -1
$sa.consumer.send.buffer.bytes = -1
$sa.consumer.fetch.min.bytes = 1
$sa.consumer.fetch.max.wait.ms = 500
B.producer.send.buffer.bytes = -1
B.producer.receive.buffer.bytes = -1
B.producer.buffer.memory = 67108864
B.offset.flush.timeout.ms = 10000
EOF
  fi
  cat >"$M_LOG.log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $M_LOG.log
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
EOF
  MM2_CMD=(java -Xmx512m -Dlog4j2.configurationFile="$M_LOG.log4j2.properties"
    -cp "$MM2LIBS/*" org.apache.kafka.connect.mirror.MirrorMaker "$M_PROPS")
}

run_floor() { # W
  local w=$1 out
  out=$("$ROOT/target/e2e/floor" "$SRC_BYTES")
  out=$(python3 - "$out" "$COUNT" <<'EOF'
import json, sys
f = json.loads(sys.argv[1]); gb = f["bytes"] / 1e9
print(json.dumps({"label": "floor", "records": int(sys.argv[2]), "replicated": int(sys.argv[2]),
  "source_bytes": f["bytes"], "wall_s": f["secs"], "first_batch_s": None,
  "mb_per_s": f["mb_per_s"], "mb_per_s_after_first": None, "cpu_s": f["relay_cpu_s"],
  "cpu_s_per_gb": round(f["relay_cpu_s"] / gb, 3), "broker_cpu_s": None,
  "peak_rss_mb": f["peak_rss_mb"], "error": None}))
EOF
)
  log "[$w] floor: $out"
  emit "$w" floor "$out"
}

# Latency mode: one run of TOOL at the current RTT. A fresh 8-partition lz4
# source topic per run (so each replicator starts on an empty topic, and the
# receivers read every record); measure.py latency starts the replicator,
# waits until it is up, loads E2E_LAT_WARMUP + --seconds s at --rate and
# measures the last --seconds s. See latency.py.
run_latency() { # TOOL
  local tool=$1 t tag dest sig lg out
  local -a cmd
  tag=$(run_tag)
  t="e2e-lat-$tool-$tag-$RUNID"
  PARTS=8; CODEC=lz4; MM2_CODEC=lz4
  python3 "$KTOOL" create --bootstrap "$A" --topic "$t" --partitions "$PARTS" >&2
  case $tool in
    strait)
      write_strait_cfg lat "$t"
      dest=$S_DEST sig=INT lg="$WORK/strait-lat.log"
      cmd=("$STRAIT_BIN" run --config "$S_CFG" --progress 0) ;;
    mm2)
      write_mm2_props lat "$t"
      dest=$M_DEST sig=TERM lg="$M_LOG.out"
      cmd=("${MM2_CMD[@]}") ;;
  esac
  log "[latency] $tool (round $ROUND, RTT $RTT ms, $LAT_RATE for ${LAT_WARMUP}+${LAT_SECONDS} s) -> $dest"
  out=$(python3 "$E2E/measure.py" latency --label "$tool" --source-bootstrap "$A" \
    --source-topic "$t" --dest-bootstrap "$B" --dest-topic "$dest" --partitions "$PARTS" \
    --rate "$LAT_RATE" --seconds "$LAT_SECONDS" --warmup "$LAT_WARMUP" \
    --proxy-pid "${PROXY_PID:-0}" --stop-signal "$sig" --log "$lg" -- "${cmd[@]}") || true
  log "[latency] $tool: $out"
  [[ -n $out ]] && emit latency "$tool" "$out"
  return 0
}

IFS=, read -r -a RLIST <<<"$RTTS"
IFS=, read -r -a TLIST <<<"$TOOLS"
# WAN and latency modes: every RTT in every round, the tool order rotating
# with each RTT and round (no tool always first).
turn=0
if [[ $MODE == latency ]]; then
  WORKLOADS=""
  # The brokers' JIT warms up on the same load first, so the first run's
  # floor is not a cold broker's.
  if ((LAT_BROKER_WARMUP > 0)); then
    log "[latency] warming up both brokers: $LAT_RATE into a scratch topic on each for $LAT_BROKER_WARMUP s"
    wpids=()
    for c in "$A" "$B"; do
      python3 "$KTOOL" create --bootstrap "$c" --topic "e2e-lat-warmup-$RUNID" --partitions 8 >&2
      now=$(date +%s)
      python3 "$E2E/measure.py" steady-load --bootstrap "$c" --topic "e2e-lat-warmup-$RUNID" \
        --partitions 8 --rate "$LAT_RATE" --seconds "$LAT_BROKER_WARMUP" --start-at "$now" \
        --window-from 0 --window-to 0 >/dev/null &
      wpids+=($!)
    done
    # Only these two: a bare `wait` would wait for the proxy too.
    wait "${wpids[@]}" || true
  fi
  for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
    for rtt in "${RLIST[@]}"; do
      set_rtt "$rtt"
      for ((k = 0; k < ${#TLIST[@]}; k++)); do
        run_latency "${TLIST[$(((k + turn) % ${#TLIST[@]}))]}"
      done
      turn=$((turn + 1))
    done
  done
fi
IFS=, read -r -a WLIST <<<"$WORKLOADS"
for w in "${WLIST[@]}"; do
  workload "$w"
  T="e2e-$w-$RUNID"
  MM2_CODEC=$CODEC
  log "[$w] $W_DESC: creating $T and loading $COUNT records"
  python3 "$KTOOL" create --bootstrap "$A" --topic "$T" --partitions "$PARTS" \
    --config retention.ms=-1 >&2
  lt=$SECONDS
  python3 "$KTOOL" load --bootstrap "$A" --topic "$T" --count "$COUNT" --codec "$CODEC" \
    --value-size 1000 --linger-ms "$LINGER" --batch-size "$BATCH" --keys 1000000 \
    --timeout 600 >&2
  SRC_BYTES=$(python3 "$E2E/measure.py" source-bytes "$WORK/A/node-1/data" "$T")
  log "[$w] loaded in $((SECONDS - lt)) s: $SRC_BYTES bytes on disk"
  sync   # flush dirty pages so the runs don't pay for the load's writeback
  for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
    if [[ $MODE == wan ]]; then
      for rtt in "${RLIST[@]}"; do
        set_rtt "$rtt"
        for ((k = 0; k < ${#TLIST[@]}; k++)); do
          case ${TLIST[$(((k + turn) % ${#TLIST[@]}))]} in
            strait) run_strait "$w" "$T" ;;
            mm2) run_mm2 "$w" "$T" ;;
          esac
        done
        turn=$((turn + 1))
      done
      continue
    fi
    # Interleaved: each round starts with the next tool, so no tool always runs
    # first (cold page cache) or last.
    n=${#TLIST[@]}
    for ((k = 0; k < n; k++)); do
      tool=${TLIST[$(((k + ROUND - 1) % n))]}
      case $tool in
        strait) run_strait "$w" "$T" ;;
        strait-eos) run_strait "$w" "$T" strait-eos "exactly_once = true" read_committed ;;
        strait-prefix) run_strait "$w" "$T" strait-prefix "" read_uncommitted prefix ;;
        strait-2flows) run_strait_2flows "$w" "$T" ;;
        strait-scale)
          run_strait_scale "$w" "$T"
          if ((ROUND == 1 && TAKEOVER_REPEATS > 0)); then run_strait_takeover "$w"; fi ;;
        mm2) if ((ROUND == 1)); then run_mm2 "$w" "$T"; fi ;;
        floor) run_floor "$w" ;;
        *) echo "run.sh: unknown tool $tool" >&2; exit 2 ;;
      esac
    done
  done
done

# --------------------------------------------------------------- report ----
TOTAL=$((SECONDS - T_START))
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
FMODE=$([[ $QUICK == 1 ]] && echo quick || echo full)
[[ -n $MODE ]] && FMODE=$MODE-$FMODE
[[ $MODE == latency ]] && FMODE=latency
MODE_META=()
if [[ $MODE != latency ]]; then
  MODE_META=(--meta "records=a and b: ${E2E_RECORDS:-$((QUICK ? 200000 : 1000000))}, d: ${E2E_D_RECORDS:-200000}")
fi
if [[ -n $MODE ]]; then
  MODE_META+=(--meta "wan=the replicator reaches the $WAN_SIDE cluster through fault_proxy (pid $PROXY_PID), RTTs $RTTS ms"
    --meta "mm2_wan_settings=tasks.max=min(partitions,$MM2_MAX_TASKS); source consumer fetch.max.bytes=52428800, max.partition.fetch.bytes=4194304, max.poll.records=2000, receive.buffer.bytes=-1, send.buffer.bytes=-1, fetch.min.bytes=1, fetch.max.wait.ms=500; producer batch.size=327680, linger.ms=10, buffer.memory=67108864, send.buffer.bytes=-1, receive.buffer.bytes=-1, acks=all, idempotent, max.in.flight.requests.per.connection=5; offset.flush.timeout.ms=10000")
fi
if [[ $MODE == latency ]]; then
  MODE_META+=(--meta "latency_load=$LAT_RATE of 1000-byte lz4 records, 8 partitions, ${LAT_WARMUP} s warm-up, ${LAT_SECONDS} s window")
fi
python3 "$E2E/measure.py" report --in "$RESULTS" --md "$RES/latest.md" --json "$RES/latest.json" \
  --meta "date=$STAMP" --meta "mode=$FMODE" "${MODE_META[@]}" \
  --meta "kafka=$VERSION (single node per cluster, KAFKA_JVM_OPTS=$KAFKA_JVM_OPTS)" \
  --meta "machine=$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)" \
  --meta "strait=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)" \
  --meta "total_run_s=$TOTAL" --meta "repeat=$REPEAT"
cp "$RES/latest.md" "$RES/$STAMP-$FMODE.md"; cp "$RES/latest.json" "$RES/$STAMP-$FMODE.json"
log "done in ${TOTAL}s; results in $RES/latest.md"
