#!/usr/bin/env bash
# Installs what the tests or the demo need, only what is missing. Debian
# packages go through apt-get (apt-get update first, only when something must
# be installed), as root or through sudo.
#
#   bash protocol-tests/install-deps.sh --tests   # what `cargo test` needs
#   bash protocol-tests/install-deps.sh --demo    # what protocol-tests/demo.sh needs
#
# Or pick parts:
#   --kcat          kcat (Debian package kcat, or kafkacat linked as kcat)
#   --musl          musl-tools and the Rust target x86_64-unknown-linux-musl
#   --python        python3 and the Python confluent-kafka client (librdkafka)
#   --helm          helm (go install, best effort: the deploy test lints and
#                   renders the chart with it, and checks the manifests
#                   without it)
#   --rulecheck     ~/go/bin/strait-rulecheck, Prometheus's rule loader
#                   (go build of deploy/prometheus/check, best effort: the
#                   deploy test parses the alert rules with it, or with
#                   promtool if installed, and checks their structure without)
#   --kafka VERSION Java 17 and the Kafka jars in ~/.cache/strait
#                   (protocol-tests/harness/kafka.sh fetch; Maven only if they
#                   are not cached yet)
#   --mm2           MirrorMaker 2 4.1.1 (dedicated mode) jars in ~/.cache/strait
#                   (benches/e2e/mm2_fetch.sh; Maven only if not cached): the
#                   mm2 test replicates with MM2 and takes over from it
#
# --tests is --kcat --musl --python --helm --rulecheck --mm2 --kafka 4.1.1 --kafka 3.9.1 (the versions of
# protocol-tests/harness/mod.rs); --demo is --python --kafka 4.1.1 (demo.sh's).
# Each step prints "::: STEP (time)" and its duration.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUSL_TARGET=x86_64-unknown-linux-musl
CONFLUENT_KAFKA=confluent-kafka==2.16.1

kcat=0 musl=0 python=0 helm=0 rulecheck=0 mm2=0 kafka=()
HELM_MODULE=helm.sh/helm/v3/cmd/helm@v3.22.0
while (($#)); do
  case $1 in
    --tests) kcat=1 musl=1 python=1 helm=1 rulecheck=1 mm2=1 kafka+=(4.1.1 3.9.1) ;;
    --demo) python=1 kafka+=(4.1.1) ;;
    --kcat) kcat=1 ;;
    --musl) musl=1 ;;
    --python) python=1 ;;
    --helm) helm=1 ;;
    --rulecheck) rulecheck=1 ;;
    --mm2) mm2=1; kafka+=(4.1.1) ;;
    --kafka) kafka+=("${2:?--kafka needs a version}"); shift ;;
    *) echo "usage: $0 [--tests] [--demo] [--kcat] [--musl] [--python] [--helm] [--rulecheck] [--mm2] [--kafka VERSION]..." >&2; exit 2 ;;
  esac
  shift
done

step_start=0
step() { step_start=$SECONDS; echo "::: $* ($(date -u +%T))"; }
done_step() { echo "::: done in $((SECONDS - step_start))s"; }
die() { echo "install-deps: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null; }

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

kafka_cached() { [[ -f ${STRAIT_CACHE_DIR:-$HOME/.cache/strait}/kafka/$1/.complete ]]; }

# ------------------------------------------------------ Debian packages ----
step "system packages (only if missing)"
pkgs=() need_kcat=0
if ((kcat)) && ! have kcat && ! have kafkacat; then need_kcat=1; fi
if ((musl)) && ! have musl-gcc; then pkgs+=(musl-tools); fi
if ((python || ${#kafka[@]})) && ! have python3; then pkgs+=(python3); fi
if ((python)) && ! python3 -c 'import confluent_kafka' 2>/dev/null \
   && ! python3 -m pip --version >/dev/null 2>&1; then
  # Debian's python3 has no pip (and no ensurepip); another python3 may have ensurepip.
  python3 -m ensurepip --upgrade >/dev/null 2>&1 || pkgs+=(python3-pip)
fi
if ((${#kafka[@]})); then
  have java || pkgs+=(openjdk-17-jre-headless)
  have flock || pkgs+=(util-linux)
for v in "${kafka[@]}"; do
    if ! kafka_cached "$v"; then have mvn || pkgs+=(maven); break; fi
  done
fi
if ((${#pkgs[@]} || need_kcat)); then
  ((need_kcat)) && pkgs+=(kcat)
  have apt-get || die "missing, and no apt-get to install them: ${pkgs[*]}"
  ((EUID == 0)) || have sudo || die "missing, and neither root nor sudo to install them: ${pkgs[*]}"
  as_root apt-get update -q
  # Debian 12 ships "kcat"; older releases "kafkacat".
  if ((need_kcat)) && ! apt-cache show kcat >/dev/null 2>&1; then pkgs=("${pkgs[@]/#kcat/kafkacat}"); fi
  echo "installing: ${pkgs[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
else
  echo "nothing to install"
fi
# Tests call "kcat"; provide it if only the old name exists.
if ((kcat)) && ! have kcat; then
  as_root ln -sf "$(command -v kafkacat)" /usr/local/bin/kcat
fi
done_step

# ------------------------------------------------------------ the rest ----
if ((python)); then
  step "python confluent-kafka (the independent client of the tests and the demo)"
  if python3 -c 'import confluent_kafka' 2>/dev/null; then
    echo "already installed"
  else
    # A Debian system python refuses plain pip installs (PEP 668); pyenv's does not.
    pip=(python3 -m pip install --quiet --disable-pip-version-check "$CONFLUENT_KAFKA")
    "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
  fi
  done_step
fi

if ((musl)); then
  step "Rust target $MUSL_TARGET"
  have rustc || die "Rust is missing (https://rustup.rs)"
  if [[ -d "$(rustc --print sysroot)/lib/rustlib/$MUSL_TARGET" ]]; then
    echo "already installed"
  else
    have rustup || die "the Rust target $MUSL_TARGET is missing and there is no rustup to add it"
    rustup target add "$MUSL_TARGET"
  fi
  done_step
fi

if ((helm)); then
  step "helm ($HELM_MODULE, best effort)"
  if have helm || [[ -x $HOME/go/bin/helm ]]; then
    echo "already installed"
  elif have go; then
    GOBIN="$HOME/go/bin" timeout 900 go install "$HELM_MODULE" \
      || echo "helm could not be installed: the deploy test checks the manifests without it"
  else
    echo "no Go toolchain: the deploy test checks the manifests without helm"
  fi
  done_step
fi

if ((rulecheck)); then
  # Prometheus's own rule loader (deploy/prometheus/check, Go) rather than
  # promtool: `go install .../cmd/promtool` compiles every service discovery
  # (cloud SDKs, the Kubernetes client) and had not finished after 11 minutes
  # (3.4 min of CPU) on a busy 2-core machine; the loader took 3.7 minutes
  # there, 51 s of CPU. Rebuilt every time: Go's build cache makes that instant.
  step "Prometheus rule checker (deploy/prometheus/check, best effort)"
  if have go; then
    (cd "$ROOT/deploy/prometheus/check" && timeout 600 go build -o "$HOME/go/bin/strait-rulecheck" .) \
      || echo "the rule checker could not be built: the deploy test checks the rules' structure without it"
  else
    echo "no Go toolchain: the deploy test checks the rules' structure without Prometheus's parser"
  fi
  done_step
fi

for v in "${kafka[@]}"; do
  step "Kafka $v jars"
  if kafka_cached "$v"; then echo "already cached"; else bash "$ROOT/protocol-tests/harness/kafka.sh" fetch "$v" >/dev/null; fi
  done_step
done

if ((mm2)); then
  step "MirrorMaker 2 4.1.1 jars"
  bash "$ROOT/benches/e2e/mm2_fetch.sh" 4.1.1 >/dev/null
  done_step
fi
