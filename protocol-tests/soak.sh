#!/usr/bin/env bash
# Soak test (not run in CI): steady load through strait for SOAK_MINUTES with a
# network fault every SOAK_FAULT_EVERY seconds, injected by the harness's
# fault proxy in front of both clusters (protocol-tests/tools/fault_proxy.rs).
# Every 10 s it samples strait's RSS (/proc/PID/status) and lag (/metrics)
# into a CSV; at the end it reports whether RSS stayed flat, whether lag
# returned near zero after every fault, and checks every record with the
# independent client (kafka_tool.py compare: 0 lost, 0 reordered, 0 changed).
#
#   bash protocol-tests/soak.sh
#
# Env: SOAK_MINUTES (30), SOAK_FAULT_EVERY (60 s), SOAK_RATE (records/s, 4000),
#      SOAK_OUT (target/soak: CSV, fault log, strait and proxy logs, clusters).
# Output: $SOAK_OUT/samples.csv  elapsed_s,rss_kb,lag_records,records_total,buffered_bytes,crc_refetches,fault
#         $SOAK_OUT/faults.log   elapsed_s fault
# Exit status 0 only if RSS stayed flat, lag recovered after every fault and
# the comparison passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MINUTES=${SOAK_MINUTES:-30}
FAULT_EVERY=${SOAK_FAULT_EVERY:-60}
RATE=${SOAK_RATE:-4000}
OUT=${SOAK_OUT:-$ROOT/target/soak}
HARNESS="$ROOT/protocol-tests/harness/kafka.sh"
KTOOL="$ROOT/protocol-tests/tools/kafka_tool.py"
VERSION=4.1.1
SAMPLE=10

log() { echo "[soak $(date -u +%H:%M:%S)] $*" >&2; }

pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash "$HARNESS" stop "$OUT/src" >/dev/null 2>&1 || true
  bash "$HARNESS" stop "$OUT/dst" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT INT TERM

rm -rf "$OUT" && mkdir -p "$OUT"
log "building strait and the fault proxy (release)"
cargo build --release --locked --bin strait --example fault_proxy >&2
STRAIT="$ROOT/target/release/strait"
PROXY="$ROOT/target/release/examples/fault_proxy"
bash "$HARNESS" fetch "$VERSION" >/dev/null

for side in src dst; do
  bash "$HARNESS" start "$OUT/$side" --version "$VERSION" --nodes 1 \
    --listener PROXIED:PLAINTEXT:proxied --owner-pid $$ >"$OUT/$side.bootstrap"
done
SRC=$(cat "$OUT/src.bootstrap")
DST=$(cat "$OUT/dst.bootstrap")
# "node NAME bound advertised": the proxy listens on the advertised port.
pairs() { awk '$2 == "PROXIED" { print $4 ":" $3 }' "$OUT/$1/listeners" | paste -sd' '; }
proxied() { awk '$2 == "PROXIED" { print "127.0.0.1:" $4 }' "$OUT/$1/listeners" | paste -sd,; }

# Proxies read commands on stdin: fd 5 (source side) and fd 6 (destination side).
# shellcheck disable=SC2046
exec 5> >(exec "$PROXY" $(pairs src) >>"$OUT/proxy-src.log" 2>&1)
pids+=($!)
# shellcheck disable=SC2046
exec 6> >(exec "$PROXY" $(pairs dst) >>"$OUT/proxy-dst.log" 2>&1)
pids+=($!)

METRICS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$OUT/strait.toml" <<EOF
name = "soak"
topics = ["soak-.*"]
refresh_interval_ms = 2000
checkpoint_interval_ms = 1000
metrics_address = "127.0.0.1:$METRICS_PORT"
[source]
bootstrap_servers = "$(proxied src)"
request_timeout_ms = 5000
connect_timeout_ms = 5000
[destination]
bootstrap_servers = "$(proxied dst)"
request_timeout_ms = 5000
connect_timeout_ms = 5000
EOF
for codec in lz4 none; do
  python3 "$KTOOL" create --bootstrap "$SRC" --topic "soak-$codec" --partitions 4 --config retention.ms=-1 >/dev/null
done

RUST_LOG=warn "$STRAIT" run --config "$OUT/strait.toml" --progress 30 >"$OUT/strait.log" 2>&1 &
STRAIT_PID=$!
pids+=("$STRAIT_PID")

# Steady load: RATE records/s split over both topics, one `strait load` per topic per second.
(
  while :; do
    t=$SECONDS
    for codec in lz4 none; do
      "$STRAIT" load --bootstrap "$SRC" --topic "soak-$codec" --records $((RATE / 2)) \
        --record-size 100 --codec "$codec" --partitions 4 --batch-records 50 >/dev/null 2>&1 || true
    done
    ((SECONDS > t)) || sleep 1
  done
) &
LOAD_PID=$!
pids+=("$LOAD_PID")

metric_sum() { # NAME: sum of every sample of a metric
  curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d", s }'
}

FAULTS=("reset src" "reset dst" "stall dst 20" "truncate_ppm both 5000 15" "corrupt_ppm src 100000 15"
        "latency both 50 20" "bandwidth both 1000000 20" "reset_ppm both 2000 15")
fault_n=0
fault_label=none
fault_end=0
inject() { # "CMD SIDE [ARG [SECONDS]]"
  local cmd side arg secs
  read -r cmd side arg secs <<<"$1"
  local fds=()
  case $side in src) fds=(5) ;; dst) fds=(6) ;; both) fds=(5 6) ;; esac
  for fd in "${fds[@]}"; do
    case $cmd in
      reset) echo reset >&"$fd" ;;
      stall) echo "stall $arg" >&"$fd"; secs=$arg ;;
      *) echo "$cmd $arg" >&"$fd" ;;
    esac
  done
  fault_label="${1// /_}"
  fault_end=$((SECONDS + ${secs:-0}))
  echo "$ELAPSED $fault_label" >>"$OUT/faults.log"
  log "fault: $1"
}

echo "elapsed_s,rss_kb,lag_records,records_total,buffered_bytes,crc_refetches,fault" >"$OUT/samples.csv"
T0=$SECONDS
END=$((T0 + MINUTES * 60))
next_fault=$((T0 + FAULT_EVERY))
next_sample=$((T0 + SAMPLE))
log "soak for $MINUTES min, $RATE records/s, a fault every $FAULT_EVERY s; samples in $OUT/samples.csv"
while ((SECONDS < END)); do
  sleep 1
  ELAPSED=$((SECONDS - T0))
  kill -0 "$STRAIT_PID" 2>/dev/null || { log "strait exited; see $OUT/strait.log"; exit 1; }
  if ((fault_end > 0 && SECONDS >= fault_end)); then
    echo clear >&5; echo clear >&6
    fault_end=0
    fault_label=none
  fi
  if ((SECONDS >= next_fault && SECONDS < END - FAULT_EVERY / 2)); then
    inject "${FAULTS[fault_n % ${#FAULTS[@]}]}"
    fault_n=$((fault_n + 1))
    next_fault=$((next_fault + FAULT_EVERY))
  fi
  if ((SECONDS >= next_sample)); then
    next_sample=$((next_sample + SAMPLE))
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$STRAIT_PID/status")
    echo "$ELAPSED,$rss,$(metric_sum strait_lag_records),$(metric_sum strait_records_total),$(metric_sum strait_buffered_bytes),$(metric_sum strait_crc_refetches_total),$fault_label" >>"$OUT/samples.csv"
  fi
done

log "stopping the load; waiting for strait to catch up"
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
echo clear >&5; echo clear >&6
for _ in $(seq 120); do
  (($(metric_sum strait_lag_records) == 0)) && break
  sleep 1
done
kill -TERM "$STRAIT_PID"
wait "$STRAIT_PID" || { log "strait exited with $?"; }
echo stats >&5; echo stats >&6

ok=0
for codec in lz4 none; do
  python3 "$KTOOL" compare --source "$SRC" --source-topic "soak-$codec" --dest "$DST" \
    --dest-topic "soak-$codec" --allow-duplicates | tail -1 | tee -a "$OUT/compare.json" || ok=1
done

python3 - "$OUT" "$FAULT_EVERY" "$RATE" <<'EOF' || ok=1
import csv, json, sys
out, every, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(out + "/samples.csv")))
faults = [l.split() for l in open(out + "/faults.log")] if rows else []
rss = [(int(r["elapsed_s"]), int(r["rss_kb"])) for r in rows]
warm = [v for t, v in rss if t >= min(120, rss[-1][0] // 3)] or [v for _, v in rss]
first, last, peak = warm[0], warm[-1], max(warm)
flat = last <= first * 1.25 + 16384
print("RSS after warm-up: first %d KiB, peak %d KiB, last %d KiB -> %s" %
      (first, peak, last, "flat" if flat else "GROWING"))
recovered = True
for i, (t, label) in enumerate(faults):
    t = int(t)
    nxt = int(faults[i + 1][0]) if i + 1 < len(faults) else 10**9
    after = [int(r["lag_records"]) for r in rows if t < int(r["elapsed_s"]) < nxt]
    best = min(after) if after else None
    ok_ = best is not None and best <= rate  # within about 1 s of load
    recovered &= ok_
    print("fault at %4d s %-32s min lag before the next fault: %s %s" %
          (t, label, best, "" if ok_ else "<- NOT RECOVERED"))
bad = [json.loads(l) for l in open(out + "/compare.json") if not json.loads(l)["ok"]]
print("compare:", "ok" if not bad else bad)
sys.exit(0 if flat and recovered and not bad else 1)
EOF
log "samples: $OUT/samples.csv"
exit $ok
