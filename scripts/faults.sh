#!/usr/bin/env bash
# The fault suite on demand: ./scripts/faults.sh [short|long] [--seed N]
# Builds the harness and the worker binaries in release mode, runs the lock scenario on a fresh database
# of the test server (LEASEHOLD_TEST_DATABASE_URL, default the local one), then the fault profile on a
# PostgreSQL cluster of its own (initdb into a temporary folder, a free loopback port). Prints the
# figures; exits non-zero on any anomaly. The short profile also runs inside ./scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p leasehold-testkit --bins
exec ./target/release/leasehold-faults "$@"
