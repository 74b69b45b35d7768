#!/usr/bin/env bash
# The test command (README, and what .ci/run runs): installs what the tests
# need, only what is missing (install-deps.sh --tests: kcat, musl-tools, the
# musl Rust target, Java, Maven, python3 with confluent-kafka, the Kafka 4.1.1
# and 3.9.1 jars), then runs `cargo test --locked` with any extra arguments.
#
#   bash protocol-tests/test.sh
#   bash protocol-tests/test.sh --test faults -- --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo >/dev/null || { echo "test.sh: cargo is missing (https://rustup.rs)" >&2; exit 1; }
bash protocol-tests/install-deps.sh --tests
echo "::: tests ($(date -u +%T))"
exec cargo test --locked "$@"
