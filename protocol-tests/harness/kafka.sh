#!/usr/bin/env bash
# Real-broker test harness for strait: fetch Apache Kafka jars from Maven
# Central and run small KRaft clusters (combined broker+controller nodes) on
# 127.0.0.1.  No Docker, no Kafka tarball: the broker runs straight from the
# Maven dependency closure of kafka_2.13 + kafka-tools.
#
#   kafka.sh fetch VERSION
#       Resolve jars into $STRAIT_CACHE_DIR/kafka/VERSION/libs (default cache
#       dir: ~/.cache/strait). Prints the libs dir. No-op once cached.
#   kafka.sh start DIR --version V [--nodes 1|3] [--heap 256m] [--owner-pid PID]
#                [--listener NAME:PROTOCOL[:proxied]]... [--props FILE]
#                [--scram 'SCRAM-SHA-256=[name=U,password=P]']...
#       Format and start a cluster in DIR; prints "host:port,..." on stdout.
#       Writes DIR/bootstrap, DIR/nodes ("I port controller_port pid"),
#       DIR/version. --owner-pid spawns a watchdog that stops the cluster
#       when PID exits.
#       --listener adds a listener on its own free port per node (PROTOCOL is
#       PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL); with ":proxied" the
#       listener advertises a second free port instead, where a test's proxy
#       listens and forwards to the bound one. DIR/listeners holds
#       "I NAME bound_port advertised_port" lines. --props appends FILE to
#       every node's server.properties, with {node} (node index), {nodedir}
#       and {dir} replaced (per-listener SSL/SASL settings go there).
#       --scram creates SCRAM credentials at format time (StorageTool
#       --add-scram).
#   kafka.sh stop DIR                 SIGTERM all nodes (SIGKILL after 15 s).
#   kafka.sh kill-node DIR I          SIGKILL node I.
#   kafka.sh start-node DIR I [J...]  Restart node(s) with existing config and
#                                     data, wait until they are up.
#   kafka.sh tool DIR CLASS ARGS...   Run a Kafka Java tool on the cluster's
#                                     classpath (log output: WARN to stderr).
#
# Env: STRAIT_CACHE_DIR, KAFKA_START_TIMEOUT (s, default 120),
#      KAFKA_JVM_OPTS (extra JVM flags for brokers), KAFKA_STOP_GRACE (s, 15).
# Progress goes to stderr; stdout only carries the documented result.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
CACHE_ROOT="${STRAIT_CACHE_DIR:-$HOME/.cache/strait}/kafka"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
major() { echo "${1%%.*}"; }

# ---------------------------------------------------------------- fetch ----
# Generated pom: packaging "pom", the two Kafka artifacts plus an explicit
# logging backend. 4.x logs through slf4j 1.7 -> log4j2 (log4j-core comes in
# transitively, the slf4j binding does not); 3.x uses slf4j-reload4j.
write_pom() { # VERSION FILE
  local v=$1 extra
  if (( $(major "$v") >= 4 )); then
    extra='<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>'
  else
    extra='<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>1.2.25</version></dependency>'
  fi
  cat >"$2" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strait</groupId><artifactId>kafka-dist</artifactId><version>$v</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$v</version></dependency>
    $extra
  </dependencies>
</project>
EOF
}

cmd_fetch() { # VERSION
  local v=${1:?usage: kafka.sh fetch VERSION} d
  d="$CACHE_ROOT/$v"
  if [[ -f $d/.complete ]]; then echo "$d/libs"; return 0; fi
  mkdir -p "$d"
  # The lock fd only lives for this block, so it is never inherited by a
  # broker JVM started later from the same shell.
  {
    flock 9
    if [[ ! -f $d/.complete ]]; then   # re-check: another process may have won
      log "fetching Kafka $v into $d/libs (maven)"
      write_pom "$v" "$d/pom.xml"
      rm -rf "$d/libs" "$d/libs.tmp"
      mvn -B -q -Dstyle.color=never -f "$d/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$d/libs.tmp" >&2 \
        || die "maven could not resolve Kafka $v"
      ls "$d/libs.tmp"/kafka_2.13-"$v".jar >/dev/null || die "kafka_2.13-$v.jar missing"
      mv "$d/libs.tmp" "$d/libs"
      touch "$d/.complete"
    fi
  } 9>"$d/.lock"
  echo "$d/libs"
}

# ------------------------------------------------------------- helpers ----
free_ports() { # COUNT -> space separated, all distinct (sockets held together)
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Shell snippet closing every inherited fd > 2 (except bash's own script fd
# 255). Detached children must not keep a caller's pipe open: a Rust test
# reading our stdout until EOF would hang forever.
# shellcheck disable=SC2016
# (No redirection on the loop: bash would park fd 2 on a high fd we then close.)
CLOSE_FDS='for _fd in /proc/$$/fd/*; do _fd=${_fd##*/}; if [[ $_fd -gt 2 && $_fd -ne 255 && -e /proc/$$/fd/$_fd ]]; then eval "exec $_fd>&-"; fi; done; '

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Process exists and is not a zombie (detached JVMs are reaped by init, which
# may lag behind; kill -0 alone would report a dead zombie as alive).
alive() { # PID
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# How many (unfenced) brokers does the broker on PORT list in a Metadata
# response? Minimal Kafka protocol client: Metadata v4 (valid on 3.x and 4.x,
# which dropped v0-v3), no topics. Prints 0 on any error.
brokers_seen() { # PORT
  python3 - "$1" <<'EOF' 2>/dev/null || echo 0
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
cid = b"strait-harness"
body = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid + struct.pack(">ib", 0, 0)
s.sendall(struct.pack(">i", len(body)) + body)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
n, = struct.unpack(">i", read(4))
resp = read(n)
corr, throttle, count = struct.unpack(">iii", resp[:12])
print(count if corr == 7 else 0)
EOF
}

# Is PID still a broker JVM of this cluster? (guards against PID reuse)
is_node_pid() { # PID NODEDIR
  [[ -n $1 && -r /proc/$1/cmdline ]] || return 1
  tr '\0' ' ' </proc/"$1"/cmdline 2>/dev/null | grep -qF "kafka.Kafka $2/server.properties"
}

node_field() { awk -v i="$2" '$1 == i { print $'"$3"' }' "$1/nodes"; } # DIR I COL

libs_of() { cmd_fetch "$(cat "$1/version")"; }

# Logging configs: INFO to the node's server.log only (never the terminal).
write_log_configs() { # NODEDIR
  local nd=$1
  cat >"$nd/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$nd/server.log
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients.NetworkClient=WARN
EOF
  cat >"$nd/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $nd/server.log
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.req.name = kafka.request.logger
logger.req.level = WARN
logger.nc.name = org.apache.kafka.clients.NetworkClient
logger.nc.level = WARN
EOF
}

# Launch node I detached (own session, stdio away from the caller's pipes).
# The pid is written by the wrapper shell itself right before exec'ing java.
# JIT: C1 only (-XX:TieredStopAtLevel=1). Measured on 2 cores: start ~2.6 s vs
# ~2.85 s, same produce/consume throughput, ~40% less broker CPU (no C2
# compiles). KAFKA_JVM_OPTS=-XX:TieredStopAtLevel=4 restores the full JIT.
launch_node() { # DIR I
  local dir=$1 i=$2 nd="$1/node-$2" libs
  libs=$(libs_of "$dir")
  mkdir -p "$nd/tmp"   # JVM temp dir (lz4/snappy/zstd native libs land here, not in /tmp)
  # shellcheck disable=SC2086
  setsid bash -c "$CLOSE_FDS"'echo $$ >"$0/pid"; exec "$@"' "$nd" \
    java -Xmx"$HEAP" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 ${KAFKA_JVM_OPTS:-} \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$nd/log4j.properties" \
    -Dlog4j2.configurationFile="$nd/log4j2.properties" \
    -Dkafka.logs.dir="$nd" -Djava.io.tmpdir="$nd/tmp" \
    -cp "$libs/*" kafka.Kafka "$nd/server.properties" \
    </dev/null >>"$nd/server.out" 2>&1 9>&- &
}

# Wait until node I logs "Kafka Server started" (only counting log bytes
# written after OFFSET, so restarts don't match old lines) and its port
# accepts TCP. Fails early if the JVM dies.
wait_node() { # DIR I OFFSET DEADLINE
  local dir=$1 i=$2 off=$3 deadline=$4 nd="$1/node-$2" port pid
  port=$(cat "$nd/port")
  while :; do
    pid=$(cat "$nd/pid" 2>/dev/null || true)
    if [[ -f $nd/server.log ]] && tail -c +"$((off + 1))" "$nd/server.log" \
         | grep -q 'Kafka Server started' && port_open "$port"; then
      return 0
    fi
    if [[ -n $pid ]] && ! alive "$pid"; then
      log "node $i (pid $pid) exited during startup"; return 1
    fi
    (( SECONDS < deadline )) || { log "node $i not up after ${START_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
}

# "Kafka Server started" does not mean unfenced: the broker is unfenced by a
# later heartbeat, and until then Metadata omits it (RF=3 topic creation
# would fail). So wait until every running node lists every running node.
wait_brokers() { # DIR DEADLINE
  local dir=$1 deadline=$2 nd pid port want=0 ok seen
  local -a ports=()
  for nd in "$dir"/node-*; do
    pid=$(cat "$nd/pid" 2>/dev/null || true)
    if alive "${pid:-0}"; then ports+=("$(cat "$nd/port")"); want=$((want + 1)); fi
  done
  while :; do
    ok=1
    for port in "${ports[@]}"; do
      seen=$(brokers_seen "$port"); [[ $seen == "$want" ]] || { ok=0; break; }
    done
    ((ok)) && return 0
    ((SECONDS < deadline)) || { log "brokers not all visible after ${START_TIMEOUT}s (port $port sees $seen/$want)"; return 1; }
    sleep 0.2
  done
}

dump_logs() { # DIR
  local nd
  for nd in "$1"/node-*; do
    [[ -d $nd ]] || continue
    log "---- last 40 lines of $nd/server.log ----"
    tail -n 40 "$nd/server.log" >&2 2>/dev/null || true
    log "---- last 40 lines of $nd/server.out ----"
    tail -n 40 "$nd/server.out" >&2 2>/dev/null || true
  done
}

write_nodes_file() { # DIR
  local dir=$1 nd i
  : >"$dir/nodes.tmp"
  for nd in "$dir"/node-*; do
    i=${nd##*-}
    echo "$i $(cat "$nd/port") $(cat "$nd/cport") $(cat "$nd/pid" 2>/dev/null || echo 0)" >>"$dir/nodes.tmp"
  done
  sort -n "$dir/nodes.tmp" >"$dir/nodes" && rm -f "$dir/nodes.tmp"
}

# ---------------------------------------------------------------- start ----
cmd_start() {
  local dir="" version="" nodes=1 owner="" props=""
  local -a listeners=() scram=()
  HEAP=256m
  dir=${1:?usage: kafka.sh start DIR --version V [--nodes N] [--heap H] [--owner-pid PID]}; shift
  while (($#)); do
    case $1 in
      --version) version=$2; shift 2 ;;
      --nodes) nodes=$2; shift 2 ;;
      --heap) HEAP=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --listener) listeners+=("$2"); shift 2 ;;
      --props) props=$2; shift 2 ;;
      --scram) scram+=(--add-scram "$2"); shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ -n $version ]] || die "--version is required"
  [[ $nodes =~ ^[1-9]$ ]] || die "--nodes must be 1..9"
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  [[ ! -e $dir/nodes ]] || die "$dir already holds a cluster"
  local libs; libs=$(cmd_fetch "$version")
  echo "$version" >"$dir/version"; echo "$HEAP" >"$dir/heap"
  rm -f "$dir/stopped"

  # Owner watchdog first, so even a failed/aborted start gets cleaned up.
  if [[ -n $owner ]]; then
    setsid bash "$SELF" __watchdog "$dir" "$owner" </dev/null >>"$dir/watchdog.log" 2>&1 9>&- &
  fi

  local l nl=${#listeners[@]}
  for l in "${listeners[@]}"; do
    [[ $l =~ ^[A-Z][A-Z0-9_]*:(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)(:proxied)?$ ]] \
      || die "bad --listener $l (want NAME:PROTOCOL[:proxied])"
  done
  [[ -z $props || -f $props ]] || die "--props file $props not found"
  # Per node: broker port, controller port, then bound+advertised per extra listener.
  local per=$((2 + 2 * nl))
  local -a ports; read -r -a ports <<<"$(free_ports $((per * nodes)))"
  local i voters="" boot="" minisr=$(( nodes < 2 ? nodes : 2 ))
  for ((i = 1; i <= nodes; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:${ports[per*(i-1)+1]}"
    boot+="${boot:+,}127.0.0.1:${ports[per*(i-1)]}"
  done

  local cid; cid=$(java -Xmx64m -XX:TieredStopAtLevel=1 -cp "$libs/*" \
    -Dlog4j.configuration=file:/dev/null -Dlog4j2.configurationFile=/dev/null \
    kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
  [[ -n $cid ]] || die "StorageTool random-uuid failed"
  echo "$cid" >"$dir/cluster-id"

  local nd port cport extra="" lst adv map k name proto bp ap
  : >"$dir/listeners"
  if (( $(major "$version") >= 4 )); then
    extra="share.coordinator.state.topic.replication.factor=$nodes
share.coordinator.state.topic.min.isr=$minisr
share.coordinator.state.topic.num.partitions=1"
  fi
  for ((i = 1; i <= nodes; i++)); do
    nd="$dir/node-$i"; port=${ports[per*(i-1)]}; cport=${ports[per*(i-1)+1]}
    mkdir -p "$nd/data"; echo "$port" >"$nd/port"; echo "$cport" >"$nd/cport"
    write_log_configs "$nd"
    lst="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    adv="PLAINTEXT://127.0.0.1:$port"
    map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    for ((k = 0; k < nl; k++)); do
      IFS=: read -r name proto _ <<<"${listeners[k]}"
      bp=${ports[per*(i-1)+2+2*k]}; ap=$bp
      [[ ${listeners[k]} == *:proxied ]] && ap=${ports[per*(i-1)+3+2*k]}
      lst+=",$name://127.0.0.1:$bp"; adv+=",$name://127.0.0.1:$ap"; map+=",$name:$proto"
      echo "$i $name $bp $ap" >>"$dir/listeners"
    done
    cat >"$nd/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=$lst
advertised.listeners=$adv
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
log.dirs=$nd/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$nodes
min.insync.replicas=1
offsets.topic.replication.factor=$nodes
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$nodes
transaction.state.log.min.isr=$minisr
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
# small machine / fast start & failure detection
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.cleaner.backoff.ms=1000
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=6000
controller.quorum.election.timeout.ms=1000
controller.quorum.fetch.timeout.ms=2000
replica.lag.time.max.ms=10000
$extra
EOF
    if [[ -n $props ]]; then
      sed -e "s|{node}|$i|g" -e "s|{nodedir}|$nd|g" -e "s|{dir}|$dir|g" "$props" >>"$nd/server.properties"
    fi
    java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$libs/*" \
      -Dlog4j.configuration="file:$nd/log4j.properties" \
      -Dlog4j2.configurationFile="$nd/log4j2.properties" \
      kafka.tools.StorageTool format -t "$cid" -c "$nd/server.properties" "${scram[@]}" \
      >"$nd/format.out" 2>&1 || { cat "$nd/format.out" >&2; die "format of node $i failed"; }
  done

  log "starting $nodes-node Kafka $version cluster in $dir"
  for ((i = 1; i <= nodes; i++)); do launch_node "$dir" "$i"; done
  local deadline=$((SECONDS + START_TIMEOUT)) ok=1
  for ((i = 1; i <= nodes; i++)); do
    wait_node "$dir" "$i" 0 "$deadline" || { ok=0; break; }
  done
  ((ok)) && { wait_brokers "$dir" "$deadline" || ok=0; }
  write_nodes_file "$dir"
  if ((!ok)); then
    dump_logs "$dir"; cmd_stop "$dir" || true
    die "cluster in $dir failed to start"
  fi
  echo "$boot" >"$dir/bootstrap"
  log "cluster up after ${SECONDS}s: $boot"
  echo "$boot"
}

# ----------------------------------------------------------------- stop ----
# SIGTERM all nodes at once; SIGKILL whatever is left after the grace period
# (KAFKA_STOP_GRACE, default 15 s). Shortcut: when the whole quorum stops
# together, the last controller sits ~5 s in Raft's graceful shutdown waiting
# for voters that are already gone. Once every live node has logged its
# broker part as "shut down completed" (partition logs closed cleanly), the
# rest is only the metadata quorum, so we SIGKILL right away.
cmd_stop() { # DIR
  local dir=${1:?usage: kafka.sh stop DIR} nd pid live grace=${KAFKA_STOP_GRACE:-15}
  [[ -d $dir ]] || die "no such dir $dir"
  dir=$(cd "$dir" && pwd)
  local -a pids=() nds=() offs=()
  for nd in "$dir"/node-*; do
    [[ -d $nd ]] || continue
    pid=$(cat "$nd/pid" 2>/dev/null || true)
    if is_node_pid "$pid" "$nd"; then
      pids+=("$pid"); nds+=("$nd"); offs+=("$(stat -c %s "$nd/server.log" 2>/dev/null || echo 0)")
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + grace)) k brokers_done
  while ((${#pids[@]})); do
    live=0; brokers_done=1
    for k in "${!pids[@]}"; do
      alive "${pids[k]}" || continue
      live=1
      tail -c +"$((offs[k] + 1))" "${nds[k]}/server.log" 2>/dev/null \
        | grep -q 'BrokerServer id=[0-9]*\] shut down completed' || brokers_done=0
    done
    ((live)) || break
    if ((brokers_done || SECONDS >= deadline)); then
      ((brokers_done)) || log "SIGKILL after ${grace}s: ${pids[*]}"
      kill -KILL "${pids[@]}" 2>/dev/null || true
      for pid in "${pids[@]}"; do while alive "$pid"; do sleep 0.05; done; done
      break
    fi
    sleep 0.1
  done
  touch "$dir/stopped"
}

# ------------------------------------------------- kill-node/start-node ----
cmd_kill_node() { # DIR I
  local dir=${1:?usage: kafka.sh kill-node DIR I} i=${2:?node index} pid
  dir=$(cd "$dir" && pwd)
  pid=$(cat "$dir/node-$i/pid" 2>/dev/null || true)
  is_node_pid "$pid" "$dir/node-$i" || { log "node $i is not running"; return 0; }
  kill -KILL "$pid"
  while alive "$pid"; do sleep 0.05; done
  log "node $i (pid $pid) killed"
}

# Several indexes may be given: they are launched together, then awaited
# (needed to restart a whole 3-node quorum, which cannot elect a leader and
# hence never reports "started" while only one node runs).
cmd_start_node() { # DIR I [J...]
  local dir=${1:?usage: kafka.sh start-node DIR I [J...]} i nd pid
  shift; (($#)) || die "usage: kafka.sh start-node DIR I [J...]"
  dir=$(cd "$dir" && pwd)
  HEAP=$(cat "$dir/heap" 2>/dev/null || echo 256m)
  local -A off=()
  for i in "$@"; do
    nd="$dir/node-$i"
    [[ -f $nd/server.properties ]] || die "no node $i in $dir"
    pid=$(cat "$nd/pid" 2>/dev/null || true)
    ! is_node_pid "$pid" "$nd" || die "node $i is still running (pid $pid)"
    off[$i]=$(stat -c %s "$nd/server.log" 2>/dev/null || echo 0)
  done
  rm -f "$dir/stopped"
  for i in "$@"; do rm -f "$dir/node-$i/pid"; launch_node "$dir" "$i"; done
  local deadline=$((SECONDS + START_TIMEOUT))
  for i in "$@"; do
    if ! wait_node "$dir" "$i" "${off[$i]}" "$deadline"; then
      write_nodes_file "$dir"; dump_logs "$dir"; die "node $i failed to restart"
    fi
  done
  wait_brokers "$dir" "$deadline" || { write_nodes_file "$dir"; dump_logs "$dir"; die "restart of node(s) $* failed"; }
  write_nodes_file "$dir"
  log "node(s) $* up again"
}

# ----------------------------------------------------------------- tool ----
cmd_tool() { # DIR CLASS ARGS...
  local dir=${1:?usage: kafka.sh tool DIR CLASS ARGS...} cls=${2:?class}; shift 2
  dir=$(cd "$dir" && pwd)
  local libs; libs=$(libs_of "$dir")
  # Quiet logging for tools: WARN and above to stderr.
  [[ -f $dir/tools-log4j.properties ]] || cat >"$dir/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, err
log4j.appender.err=org.apache.log4j.ConsoleAppender
log4j.appender.err.Target=System.err
log4j.appender.err.layout=org.apache.log4j.PatternLayout
log4j.appender.err.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  [[ -f $dir/tools-log4j2.properties ]] || cat >"$dir/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
  exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j.configuration="file:$dir/tools-log4j.properties" \
    -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" \
    -cp "$libs/*" "$cls" "$@"
}

# ------------------------------------------------------------- watchdog ----
# Internal: runs detached; stops the cluster once OWNER is gone (or a zombie).
cmd_watchdog() { # DIR OWNER
  local dir=$1 owner=$2
  eval "$CLOSE_FDS"
  while [[ ! -e $dir/stopped ]]; do
    if ! alive "$owner"; then
      echo "$(date -Is) owner $owner gone, stopping cluster"
      cmd_stop "$dir"; break
    fi
    sleep 1
  done
}

case ${1:-} in
  fetch) shift; cmd_fetch "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  kill-node) shift; cmd_kill_node "$@" ;;
  start-node) shift; cmd_start_node "$@" ;;
  tool) shift; cmd_tool "$@" ;;
  __watchdog) shift; cmd_watchdog "$@" ;;
  *) sed -n '2,/^# Progress/p' "$SELF" >&2; exit 2 ;;
esac
