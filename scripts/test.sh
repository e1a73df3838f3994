#!/usr/bin/env bash
# leasehold's whole test suite: brings up (or checks) the servers the tests use, then runs
# formatting, lints, every test and the doc tests. Nothing is skipped silently.
#
#   ./scripts/test.sh
#
# Servers, on loopback: PostgreSQL (127.0.0.1:5432, user postgres), RabbitMQ (127.0.0.1:5672) and Redis
# (127.0.0.1:6379). For each one that does not answer, the script starts the local installation if there
# is one, else runs `docker compose up -d` where a Docker engine answers, else says what is missing.
# LEASEHOLD_TEST_DATABASE_URL points the tests at another PostgreSQL (a role that may create databases).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 5; i++)); do port_open "$2" && return 0; sleep 0.2; done
  return 1
}

docker_ok() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

missing=()
compose_up=false

ensure() { # name port start-command...
  local name=$1 port=$2; shift 2
  if port_open "$port"; then say "$name answers on 127.0.0.1:$port"; return; fi
  if [ $# -gt 0 ] && type "$1" >/dev/null 2>&1; then
    say "$name is down: starting it ($*)"
    "$@" >/dev/null 2>&1 || true
    if wait_port "$name" "$port" 90; then say "$name started"; return; fi
  fi
  if docker_ok; then
    if ! $compose_up; then say "starting the servers with docker compose"; docker compose up -d postgres rabbitmq redis; compose_up=true; fi
    if wait_port "$name" "$port" 120; then say "$name started in docker"; return; fi
  fi
  missing+=("$name (nothing answers on 127.0.0.1:$port, no local installation could be started, no Docker engine)")
}

start_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
}

if [ -z "${LEASEHOLD_TEST_DATABASE_URL:-}" ]; then
  if [ -d /etc/postgresql ]; then ensure PostgreSQL 5432 start_postgres; else ensure PostgreSQL 5432; fi
fi
ensure RabbitMQ 5672 rabbitmq-server -detached
ensure Redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
if [ ${#missing[@]} -gt 0 ]; then
  printf 'error: the tests need servers that are not running:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  printf 'Start them (see docker-compose.yml), or set LEASEHOLD_TEST_DATABASE_URL for PostgreSQL.\n' >&2
  exit 1
fi

# Prometheus and promtool check the dashboards and the metrics exposition (Debian's prometheus package)
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing prometheus (with promtool) from the Debian packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null \
      || die "apt-get install prometheus failed"
  else
    die "the dashboard tests need prometheus and promtool on PATH (Debian: apt-get install prometheus)"
  fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
say "doc tests"
cargo test --workspace --doc
say "the quickstart (README's first command), in a scratch folder"
scratch=$(mktemp -d)
(cd "$scratch" && cargo run -q --manifest-path "$OLDPWD/Cargo.toml" -p example-quickstart | tail -n 7)
rm -rf "$scratch"
say "tests"
cargo nextest run --workspace --no-fail-fast
