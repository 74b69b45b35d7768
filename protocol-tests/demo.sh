#!/usr/bin/env bash
# strait demo: the README's "main job" in one command.
#
#   bash protocol-tests/demo.sh
#
# 0. installs what it needs, only what is missing (install-deps.sh --demo:
#    python3 with confluent-kafka, Java 17, the Kafka 4.1.1 jars, and Maven
#    to fetch them),
# 1. builds strait (cargo build --release --locked),
# 2. starts two local single-node Kafka 4.1.1 clusters, "source" and
#    "destination" (protocol-tests/harness/kafka.sh, jars from Maven Central),
# 3. creates sample topics on the source and loads sample data with the
#    independent tool protocol-tests/tools/kafka_tool.py (librdkafka, not
#    strait),
# 4. writes a strait config ($DIR/strait.toml),
# 5. starts a background "trickle" producer adding new records to `orders`
#    every second,
# 6. runs `strait run` in the foreground: progress lines (records/s, MB/s, lag
#    per topic) every 2 s while it catches up, then it keeps replicating the
#    trickle until Ctrl-C.
#
# Ctrl-C / SIGTERM: strait gets SIGINT and stops gracefully, then the trickle
# producer and both clusters are stopped. Nothing is left running.
#
# Env:
#   DEMO_DIR      work dir (default target/demo; wiped first)
#   DEMO_RECORDS  total sample records over the three topics (default 900000,
#                 split 3:1:2 over orders/payments/clicks; ~10 s of loading on
#                 2 cores, enough for a couple of catch-up progress lines)
#   DEMO_SECONDS  non-interactive mode: stop automatically after N seconds of
#                 replication, then check every topic with `kafka_tool.py
#                 compare`; exit non-zero if any compare fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KAFKA_SH="$ROOT/protocol-tests/harness/kafka.sh"
TOOL="$ROOT/protocol-tests/tools/kafka_tool.py"
STRAIT="$ROOT/target/release/strait"
KAFKA_VERSION=4.1.1   # install-deps.sh --demo fetches its jars
DIR="${DEMO_DIR:-target/demo}"
RECORDS="${DEMO_RECORDS:-900000}"
SECS="${DEMO_SECONDS:-}"
TOPICS=(orders payments clicks)

[[ $RECORDS =~ ^[0-9]+$ ]] || { echo "demo: DEMO_RECORDS must be a number" >&2; exit 2; }
[[ -z $SECS || $SECS =~ ^[0-9]+$ ]] || { echo "demo: DEMO_SECONDS must be a number" >&2; exit 2; }

if [[ -t 2 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN" >&2; }
alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# ------------------------------------------------------------- cleanup ----
# Everything the script starts is tracked here; the EXIT trap stops whatever
# is still running, in order: strait, trickle producer, log tail, clusters.
STRAIT_PID="" TRICKLE_PID="" TAIL_PID="" TIMER_PID=""
STARTED_CLUSTERS=()
PHASE=setup          # setup -> run -> stopping
STOP_REASON=""

stop_trickle() {
  [[ -n $TRICKLE_PID ]] || return 0
  # Ask the loop to finish its current batch, then wait for it (kill after 10 s).
  touch "$DIR/trickle.stop"
  local i
  for ((i = 0; i < 100; i++)); do alive "$TRICKLE_PID" || break; sleep 0.1; done
  if alive "$TRICKLE_PID"; then kill -TERM -- "-$TRICKLE_PID" 2>/dev/null || true; fi
  wait "$TRICKLE_PID" 2>/dev/null || true
  TRICKLE_PID=""
}

stop_strait() { # graceful: SIGINT, then wait (SIGKILL after 60 s)
  [[ -n $STRAIT_PID ]] || return 0
  local i rc=0
  kill -INT "$STRAIT_PID" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do alive "$STRAIT_PID" || break; sleep 0.1; done
  if alive "$STRAIT_PID"; then
    echo "demo: strait did not stop within 60 s; SIGKILL" >&2
    kill -KILL "$STRAIT_PID" 2>/dev/null || true
  fi
  wait "$STRAIT_PID" 2>/dev/null || rc=$?
  STRAIT_PID=""
  # Let the log tail print strait's last lines (it exits once strait is gone).
  if [[ -n $TAIL_PID ]]; then wait "$TAIL_PID" 2>/dev/null || true; TAIL_PID=""; fi
  return "$rc"
}

cleanup() {
  local rc=$?
  trap '' INT TERM
  set +e
  [[ -n $TIMER_PID ]] && { kill "$TIMER_PID" 2>/dev/null; wait "$TIMER_PID" 2>/dev/null; }
  stop_strait
  stop_trickle
  [[ -n $TAIL_PID ]] && { kill "$TAIL_PID" 2>/dev/null; wait "$TAIL_PID" 2>/dev/null; }
  local c
  for c in "${STARTED_CLUSTERS[@]}"; do
    echo "demo: stopping cluster $c" >&2
    bash "$KAFKA_SH" stop "$c" || true
  done
  if [[ -d $DIR ]]; then
    echo >&2
    echo "demo: logs are in $DIR:" >&2
    [[ -f $DIR/strait.log ]] && echo "  strait:               $DIR/strait.log" >&2
    [[ -f $DIR/trickle.log ]] && echo "  trickle producer:     $DIR/trickle.log" >&2
    [[ -d $DIR/source ]] && echo "  source broker:        $DIR/source/node-1/server.log" >&2
    [[ -d $DIR/destination ]] && echo "  destination broker:   $DIR/destination/node-1/server.log" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
# During setup Ctrl-C just aborts (the EXIT trap cleans up); while strait runs
# it only records the request: the main loop then stops things in order.
on_signal() {
  if [[ $PHASE == run ]]; then STOP_REASON=${STOP_REASON:-$1}; else exit 130; fi
}
trap 'on_signal interrupt' INT
trap 'on_signal terminate' TERM
trap 'STOP_REASON=${STOP_REASON:-timer}' USR1

# ---------------------------------------------------------------- deps ----
say "installing what the demo needs, if missing (protocol-tests/install-deps.sh --demo)"
command -v cargo >/dev/null || { echo "demo: cargo is missing (https://rustup.rs)" >&2; exit 1; }
bash "$ROOT/protocol-tests/install-deps.sh" --demo 2>&1 | sed 's/^/  /' >&2

# --------------------------------------------------------------- build ----
say "building strait (cargo build --release --locked)"
cargo build --release --locked

# ------------------------------------------------------------ clusters ----
say "work dir $DIR (wiped)"
rm -rf "$DIR"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

say "starting the source and destination clusters (Kafka $KAFKA_VERSION, KRaft, 1 node each)"
# Both start in parallel (the harness prints the bootstrap on stdout). The
# owner watchdog stops a cluster if this script dies without cleaning up.
STARTED_CLUSTERS=("$DIR/source" "$DIR/destination")
bash "$KAFKA_SH" start "$DIR/source" --version "$KAFKA_VERSION" --owner-pid $$ >"$DIR/source.bootstrap" &
src_start=$!
bash "$KAFKA_SH" start "$DIR/destination" --version "$KAFKA_VERSION" --owner-pid $$ >"$DIR/destination.bootstrap" &
dst_start=$!
wait "$src_start" || { echo "demo: source cluster failed to start" >&2; exit 1; }
wait "$dst_start" || { echo "demo: destination cluster failed to start" >&2; exit 1; }
SRC=$(cat "$DIR/source.bootstrap")
DST=$(cat "$DIR/destination.bootstrap")
echo "source:      $SRC" >&2
echo "destination: $DST" >&2

# -------------------------------------------------------- sample data ----
# name partitions codec share-of-DEMO_RECORDS (3:1:2)
declare -A PARTS=([orders]=6 [payments]=3 [clicks]=4)
declare -A CODEC=([orders]=lz4 [payments]=zstd [clicks]=none)
declare -A COUNT=([orders]=$((RECORDS * 3 / 6)) [payments]=$((RECORDS / 6)) [clicks]=$((RECORDS * 2 / 6)))

say "creating topics on the source (retention.ms=-1: the sample records carry 2023 timestamps)"
for t in "${TOPICS[@]}"; do
  echo "  $t: ${PARTS[$t]} partitions, ${CODEC[$t]} compression" >&2
  python3 "$TOOL" create --bootstrap "$SRC" --topic "$t" --partitions "${PARTS[$t]}" \
    --config retention.ms=-1 >/dev/null
done

say "loading sample data ($RECORDS records, 100-byte values, three producers in parallel)"
load_start=$SECONDS
declare -A LOAD_PID=()
for t in "${TOPICS[@]}"; do
  echo "  $t: ${COUNT[$t]} records (${CODEC[$t]})" >&2
  python3 "$TOOL" load --bootstrap "$SRC" --topic "$t" --count "${COUNT[$t]}" \
    --codec "${CODEC[$t]}" --linger-ms 20 --batch-size 262144 >"$DIR/load-$t.log" 2>&1 &
  LOAD_PID[$t]=$!
done
for t in "${TOPICS[@]}"; do
  wait "${LOAD_PID[$t]}" || { echo "demo: loading $t failed:" >&2; cat "$DIR/load-$t.log" >&2; exit 1; }
done
echo "  done in $((SECONDS - load_start)) s" >&2

# -------------------------------------------------------------- config ----
say "writing $DIR/strait.toml"
cat >"$DIR/strait.toml" <<EOF
name = "demo"
topics = ["orders", "payments", "clicks"]
refresh_interval_ms = 5000

[source]
alias = "source"
bootstrap_servers = "$SRC"

[destination]
bootstrap_servers = "$DST"
EOF
sed 's/^/  /' "$DIR/strait.toml" >&2

# ---------------------------------------------------- trickle producer ----
# 200 new `orders` records per second (indices continue after the sample
# data, so every record is distinct). Runs in its own session so it can be
# stopped as a group; it also stops when trickle.stop appears or the script
# dies.
say "starting the trickle producer (200 new orders records per second)"
rm -f "$DIR/trickle.stop"
# shellcheck disable=SC2016  # (expanded by the inner bash)
setsid bash -c '
  tool=$1 src=$2 dir=$3 n=$4 owner=$5
  while [[ ! -e $dir/trickle.stop ]] && kill -0 "$owner" 2>/dev/null; do
    python3 "$tool" load --bootstrap "$src" --topic orders --count 200 \
      --codec lz4 --start-index "$n" || exit 1
    n=$((n + 200))
    sleep 1
  done' trickle "$TOOL" "$SRC" "$DIR" "${COUNT[orders]}" $$ \
  </dev/null >"$DIR/trickle.log" 2>&1 &
TRICKLE_PID=$!

# --------------------------------------------------------------- strait ----
say "running: $STRAIT run --config $DIR/strait.toml --progress 2"
if [[ -n $SECS ]]; then
  echo "  (stops by itself after $SECS s, then compares source and destination)" >&2
else
  echo "  (progress every 2 s; press Ctrl-C to stop)" >&2
fi
# strait logs to $DIR/strait.log; a tail shows it live. (Background jobs of a
# script ignore the terminal's SIGINT, so Ctrl-C reaches only this script,
# which then stops strait with SIGINT itself, in order.)
: >"$DIR/strait.log"
[[ -t 2 ]] || export NO_COLOR=1   # plain log lines when not on a terminal
"$STRAIT" run --config "$DIR/strait.toml" --progress 2 </dev/null >>"$DIR/strait.log" 2>&1 &
STRAIT_PID=$!
tail -n +1 -f --pid="$STRAIT_PID" "$DIR/strait.log" >&2 &
TAIL_PID=$!
PHASE=run
if [[ -n $SECS ]]; then
  # (the sleep is killed with its subshell if the script stops earlier)
  (trap 'kill "$s" 2>/dev/null; exit 0' TERM; sleep "$SECS" & s=$!; wait "$s"; kill -USR1 $$) \
    </dev/null >/dev/null 2>&1 &
  TIMER_PID=$!
fi

# Wait until strait exits by itself (an error) or a stop is requested; `wait`
# returns early whenever a trapped signal arrives.
strait_rc=0
while [[ -z $STOP_REASON ]] && alive "$STRAIT_PID"; do
  wait "$STRAIT_PID" 2>/dev/null || true
done
PHASE=stopping
if [[ -z $STOP_REASON ]]; then
  wait "$STRAIT_PID" 2>/dev/null || strait_rc=$?
  STRAIT_PID=""
  wait "$TAIL_PID" 2>/dev/null || true; TAIL_PID=""
  echo "demo: strait exited on its own (status $strait_rc); see $DIR/strait.log" >&2
  exit 1
fi

if [[ $STOP_REASON == timer ]]; then
  TIMER_PID=""
  # Stop new data first and give strait time to replicate the last of it.
  say "$SECS s are up: stopping the trickle producer, letting strait finish"
  stop_trickle
  sleep 3
  say "stopping strait (SIGINT)"
  stop_strait || strait_rc=$?
else
  say "$STOP_REASON: stopping strait (SIGINT), then the trickle producer"
  stop_strait || strait_rc=$?
  stop_trickle
fi
[[ $strait_rc == 0 ]] || echo "demo: strait exited with status $strait_rc" >&2

# --------------------------------------------------------------- check ----
fail=0
if [[ $STOP_REASON == timer ]]; then
  say "comparing source and destination (kafka_tool.py compare, record by record)"
  for t in "${TOPICS[@]}"; do
    if out=$(python3 "$TOOL" compare --source "$SRC" --source-topic "$t" \
               --dest "$DST" --dest-topic "$t" 2>&1); then
      # compare prints a JSON summary; show its record counts.
      echo "  $t: ok ($(printf '%s' "$out" | tail -n1 | python3 -c \
        'import json,sys; r=json.load(sys.stdin); print("%d source = %d destination records, nothing missing/duplicated/reordered/mismatched" % (r["source_records"], r["dest_records"]))' \
        2>/dev/null || echo "$out" | tail -n1))" >&2
    else
      echo "  $t: FAILED" >&2; printf '%s\n' "$out" | sed 's/^/    /' >&2; fail=1
    fi
  done
  if ((fail == 0 && strait_rc == 0)); then say "all topics replicated exactly"; else say "demo FAILED"; fi
fi
((fail == 0 && strait_rc == 0))
# The EXIT trap stops both clusters and prints where the logs are.
