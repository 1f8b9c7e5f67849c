#!/usr/bin/env bash
# The local stack: PostgreSQL, Redis and a Kafka-protocol broker (tansu) on 127.0.0.1, with
# their data under $PROMO_STACK_DIR (default: .stack/ in the repo, git-ignored).
#
#   scripts/stack.sh install   install what is missing (Debian packages; tansu from crates.io)
#   scripts/stack.sh up        install, start what is not running, create the topics
#   scripts/stack.sh status    say what runs, and check each server answers
#   scripts/stack.sh down      stop exactly what `up` started (by its recorded pid / data dir)
#   scripts/stack.sh env       print the settings the services and tests read
#
# Idempotent: `up` twice is harmless; `down` never touches a process it did not start.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${PROMO_STACK_DIR:-$REPO/.stack}
PG_PORT=${PROMO_PG_PORT:-55432}
REDIS_PORT=${PROMO_REDIS_PORT:-56379}
KAFKA_PORT=${PROMO_KAFKA_PORT:-59092}
TANSU_VERSION=0.6.0
TANSU_BIN=${TANSU_BIN:-$HOME/.cargo/bin/tansu}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# True when the pid in file $1 is alive and its command line mentions $2 (guards against
# a recycled pid belonging to someone else).
ours() { alive "$1" && grep -qa -- "$2" "/proc/$(cat "$1")/cmdline" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 100); do port_open "$port" && return 0; sleep 0.2; done
  die "$what did not open 127.0.0.1:$port (see $STACK_DIR/*.log)"
}

install() {
  local missing=()
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v sqlite3 >/dev/null || missing+=(sqlite3)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get) or run as root"
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -x "$TANSU_BIN" ]; then
    # 13-20 minutes cold on 2 cores; the binary stays in ~/.cargo/bin, so only once per machine.
    # --locked: without it a deadpool version clash breaks the build. The default features
    # compile no storage engine; libsql gives the sqlite engine that survives restarts.
    log "building the tansu $TANSU_VERSION broker (cargo install, 13-20 min the first time)"
    cargo install --locked "tansu@$TANSU_VERSION" --features dynostore,libsql
  fi
}

pg_up() {
  local bin data=$STACK_DIR/pg sock=$STACK_DIR/pgsock
  bin=$(pg_bin)
  mkdir -p "$sock"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$data" "$sock"
    as_pg "$bin/initdb" -D "$data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 >"$STACK_DIR/initdb.log"
    cat >>"$data/postgresql.conf" <<CONF
# promotion platform, local stack
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
max_connections = 300
shared_buffers = 512MB
# fsync and synchronous_commit stay on: benchmarks measure durable commits.
CONF
  fi
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$sock"
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    port_open "$PG_PORT" && die "127.0.0.1:$PG_PORT is taken by another process"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/postgres.log" -w -t 60 start >/dev/null
  fi
  as_pg "$bin/psql" -q -h "$sock" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'CREATE ROLE promo LOGIN CREATEDB PASSWORD ''promo'''
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'promo') \gexec
SELECT 'CREATE DATABASE promo OWNER promo'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'promo') \gexec
SQL
}

redis_up() {
  mkdir -p "$STACK_DIR/redis"
  if ours "$STACK_DIR/redis.pid" redis-server; then
    log "Redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  port_open "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is taken by another process"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  # No persistence: Redis holds only read-model copies, rebuilt from the event log.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --daemonize yes \
    --pidfile "$STACK_DIR/redis.pid" --dir "$STACK_DIR/redis" \
    --logfile "$STACK_DIR/redis.log" --save '' --appendonly no
  wait_port "$REDIS_PORT" Redis
}

kafka_up() {
  mkdir -p "$STACK_DIR/kafka"
  if ours "$STACK_DIR/tansu.pid" tansu; then
    log "tansu already running on 127.0.0.1:$KAFKA_PORT"
    broker_indexes "$STACK_DIR/kafka/tansu.db"
    return
  fi
  port_open "$KAFKA_PORT" && die "127.0.0.1:$KAFKA_PORT is taken by another process"
  log "starting the tansu broker on 127.0.0.1:$KAFKA_PORT"
  # Its own empty working directory (tansu reads .env from there; the sqlite path is relative
  # to it). Both listener flags: the default listener is 0.0.0.0. SCHED_IDLE: on 2 cores the
  # broker runs when the write path and the read side leave a core free, so a flash sale is
  # not slowed by Kafka; the relay trails during the sale and catches up after (ADR 9).
  (
    cd "$STACK_DIR/kafka"
    nohup chrt --idle 0 "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" \
      >"$STACK_DIR/tansu.log" 2>&1 &
    echo $! >"$STACK_DIR/tansu.pid"
  )
  wait_port "$KAFKA_PORT" tansu
  broker_indexes "$STACK_DIR/kafka/tansu.db"
}

# The indexes tansu's sqlite store lacks (scripts/tansu-indexes.sql, ADR 9), once the broker
# has created its schema. Without them a consumer reading a big topic from offset 0 times out.
broker_indexes() {
  for _ in $(seq 1 50); do
    [ -s "$1" ] && sqlite3 -readonly "$1" "SELECT 1 FROM sqlite_master WHERE name = 'header'" 2>/dev/null |
      grep -q 1 && break
    sleep 0.1
  done
  sqlite3 -cmd ".timeout 10000" "$1" <"$REPO/scripts/tansu-indexes.sql" ||
    die "could not index the broker's store $1"
}

topics_up() {
  log "creating topics"
  (cd "$REPO" && cargo run -q -p messaging --bin promo-topics -- \
    --brokers "127.0.0.1:$KAFKA_PORT" create) >&2
}

print_env() {
  cat <<ENV
export APP_DATABASE__URL=postgres://promo:promo@127.0.0.1:$PG_PORT/promo
export DATABASE_URL=postgres://promo:promo@127.0.0.1:$PG_PORT/promo
export APP_REDIS__URL=redis://127.0.0.1:$REDIS_PORT/
export APP_KAFKA__BROKERS=127.0.0.1:$KAFKA_PORT
ENV
}

up() {
  install
  mkdir -p "$STACK_DIR"
  pg_up
  redis_up
  kafka_up
  topics_up
  print_env >"$STACK_DIR/env"
  status
}

status() {
  local bin ok=0
  bin=$(pg_bin)
  if [ -n "$bin" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    echo "postgres  up    127.0.0.1:$PG_PORT"
  else
    echo "postgres  down"; ok=1
  fi
  if command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
    echo "redis     up    127.0.0.1:$REDIS_PORT"
  else
    echo "redis     down"; ok=1
  fi
  if port_open "$KAFKA_PORT"; then
    echo "kafka     up    127.0.0.1:$KAFKA_PORT (tansu)"
  else
    echo "kafka     down"; ok=1
  fi
  return $ok
}

down() {
  local bin data=$STACK_DIR/pg
  bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$data/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  fi
  if ours "$STACK_DIR/redis.pid" redis-server; then
    log "stopping Redis"
    kill "$(cat "$STACK_DIR/redis.pid")"
  fi
  if ours "$STACK_DIR/tansu.pid" tansu; then
    log "stopping tansu"
    kill "$(cat "$STACK_DIR/tansu.pid")"
  fi
  for f in redis tansu; do
    local pidfile=$STACK_DIR/$f.pid
    for _ in $(seq 1 50); do alive "$pidfile" || break; sleep 0.1; done
    alive "$pidfile" && die "$f (pid $(cat "$pidfile")) did not stop"
    rm -f "$pidfile"
  done
  log "stopped"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
