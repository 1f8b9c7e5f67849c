#!/usr/bin/env bash
# The local stack: PostgreSQL, Redis, Apache Kafka (one KRaft node) and etcd on 127.0.0.1, with
# their data under $PROMO_STACK_DIR (default: .stack/ in the repo, git-ignored). etcd holds the
# command-api instances' membership when several run (ADR 15); nginx, installed here too, is
# the gateway `./dev run --instances N` puts in front of them (scripts/gateway.sh).
#
#   scripts/stack.sh install   install what is missing (Debian packages; Kafka's jars from
#                              Maven Central into ~/.cache/promo-kafka, scripts/kafka/node.sh)
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
KAFKA_CONTROLLER_PORT=${PROMO_KAFKA_CONTROLLER_PORT:-59093}
ETCD_PORT=${PROMO_ETCD_PORT:-12379}
ETCD_PEER_PORT=${PROMO_ETCD_PEER_PORT:-12380}
KAFKA_NODE=$REPO/scripts/kafka/node.sh

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
  local port=$1 what=$2 tries=${3:-100}
  for _ in $(seq 1 "$tries"); do port_open "$port" && return 0; sleep 0.2; done
  die "$what did not open 127.0.0.1:$port (see $STACK_DIR/*.log)"
}

install() {
  local missing=()
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v nginx >/dev/null || missing+=(nginx)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get) or run as root"
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  "$KAFKA_NODE" install
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

etcd_up() {
  if ours "$STACK_DIR/etcd.pid" etcd; then
    log "etcd already running on 127.0.0.1:$ETCD_PORT"
    return
  fi
  port_open "$ETCD_PORT" && die "127.0.0.1:$ETCD_PORT is taken by another process"
  log "starting etcd $(etcd --version | sed -n 's/^etcd Version: //p') on 127.0.0.1:$ETCD_PORT"
  nohup etcd --name promo --data-dir "$STACK_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "promo=http://127.0.0.1:$ETCD_PEER_PORT" >"$STACK_DIR/etcd.log" 2>&1 &
  echo $! >"$STACK_DIR/etcd.pid"
  wait_port "$ETCD_PORT" etcd
}

kafka_up() {
  if ours "$STACK_DIR/kafka.pid" kafka.Kafka; then
    log "Apache Kafka already running on 127.0.0.1:$KAFKA_PORT"
    return
  fi
  port_open "$KAFKA_PORT" && die "127.0.0.1:$KAFKA_PORT is taken by another process"
  port_open "$KAFKA_CONTROLLER_PORT" && die "127.0.0.1:$KAFKA_CONTROLLER_PORT is taken by another process"
  log "starting Apache Kafka $("$KAFKA_NODE" version) (KRaft, one node) on 127.0.0.1:$KAFKA_PORT"
  # Normal CPU priority: under SCHED_IDLE a saturated machine starved the node for seconds
  # at a time, past its own heartbeats (ADR 13).
  nohup "$KAFKA_NODE" run --dir "$STACK_DIR/kafka" --port "$KAFKA_PORT" \
    --controller-port "$KAFKA_CONTROLLER_PORT" >"$STACK_DIR/kafka.log" 2>&1 &
  echo $! >"$STACK_DIR/kafka.pid"
  # A first start formats the store, then the JVM starts: ~10 s on 2 cores.
  wait_port "$KAFKA_PORT" "Apache Kafka" 300
}

# Creates the system topics as the settings say (APP_KAFKA__PARTITIONS, …), and checks them,
# with the promo-topics binary the caller built ($PROMO_TOPICS_BIN: ./dev builds it first), or
# built here.
topics_up() {
  log "creating topics"
  if [ -n "${PROMO_TOPICS_BIN:-}" ] && [ -x "$PROMO_TOPICS_BIN" ]; then
    "$PROMO_TOPICS_BIN" --brokers "127.0.0.1:$KAFKA_PORT" create >&2
  else
    (cd "$REPO" && cargo run -q -p messaging --bin promo-topics -- \
      --brokers "127.0.0.1:$KAFKA_PORT" create) >&2
  fi
}

# The version the running broker logged at its start.
kafka_version() {
  grep -o 'Kafka version: [^ ]*' "$STACK_DIR/kafka.log" 2>/dev/null | tail -n 1 | cut -d' ' -f3
}

print_env() {
  cat <<ENV
export APP_DATABASE__URL=postgres://promo:promo@127.0.0.1:$PG_PORT/promo
export DATABASE_URL=postgres://promo:promo@127.0.0.1:$PG_PORT/promo
export APP_REDIS__URL=redis://127.0.0.1:$REDIS_PORT/
export APP_KAFKA__BROKERS=127.0.0.1:$KAFKA_PORT
export PROMO_ETCD=127.0.0.1:$ETCD_PORT
ENV
}

up() {
  install
  mkdir -p "$STACK_DIR"
  pg_up
  redis_up
  etcd_up
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
    echo "kafka     up    127.0.0.1:$KAFKA_PORT (Apache Kafka $(kafka_version), KRaft)"
  else
    echo "kafka     down"; ok=1
  fi
  if port_open "$ETCD_PORT"; then
    echo "etcd      up    127.0.0.1:$ETCD_PORT (etcd $(etcd --version | sed -n 's/^etcd Version: //p'))"
  else
    echo "etcd      down"; ok=1
  fi
  return $ok
}

# Stops the process recorded in $STACK_DIR/$1.pid if it is still ours (its command line
# mentions $2): SIGTERM, then SIGKILL after $4 seconds.
stop_recorded() {
  local pidfile=$STACK_DIR/$1.pid
  if ours "$pidfile" "$2"; then
    log "stopping $3"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 $(($4 * 10))); do ours "$pidfile" "$2" || break; sleep 0.1; done
    if ours "$pidfile" "$2"; then
      log "$3 (pid $(cat "$pidfile")) did not stop within $4 s: killing it"
      kill -KILL "$(cat "$pidfile")"
    fi
  fi
  rm -f "$pidfile"
}

down() {
  local bin data=$STACK_DIR/pg
  bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$data/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  fi
  stop_recorded redis redis-server Redis 5
  stop_recorded etcd etcd etcd 5
  # Kafka's controlled shutdown takes a few seconds.
  stop_recorded kafka kafka.Kafka "Apache Kafka" 30
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
