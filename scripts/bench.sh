#!/usr/bin/env bash
# The benchmark (docs/benchmarks.md), in phases on the local stack:
#   system:  the headline — the whole system as `./dev run` runs it: command-api with its
#            relay, the projector, the query API and the broker, all on these cores. Idle CPU
#            of the read side; a 100,000-unit flash sale closed loop (256 connections) and open
#            loop (10,000/s, at most 1,000 in flight), each on a fresh database, with freshness
#            (accepted → visible in the query API) sampled during the sale, the relay's lag when
#            the sale ended and how long until Kafka held every event.
#   read:    the same system: reads, and the mixed load (orders, points and reads at once).
#   write:   the write path alone (no relay, no read side), the second table: every write
#            scenario against the command API, each on a fresh database, closed loop; then
#            flash sale and coupon race open loop at a fixed rate. Checked against the log.
#            (The naive baseline — one transaction per command — was removed on 2026-12-03;
#            its figures are in docs/benchmarks.md.)
#   auth:    the whole-system closed-loop flash sale with authentication and rate limits on,
#            with tokens but no limits (APP_RATE_LIMIT__ENABLED=false), and with neither
#            (APP_AUTH__ENABLED=false too), three rounds (ROUNDS=…) in one run, the order
#            turning each round: what signing in costs a sale.
#   rebuild: a fresh database filled through the command API with ~1,000,000 events (flash
#            sale, coupon race, points), then `replay-tools rebuild` and `verify` over it.
#   ab:      the whole-system closed-loop flash sale, this build against an earlier one
#            (BASELINE=<its release directory>, BASELINE_CONFIG=<its config/ directory>; the
#            services only, promo-bench is this build's), alternating for ROUNDS rounds: what a
#            change costs a sale. AB_SCENARIO="points --users … --requests …" runs another
#            scenario instead.
#   signin:  the write path alone, points over 100,000 users (each spend by its own user's
#            token) with sign-in and limits on and off, alternating for ROUNDS rounds: what they
#            cost when every request is another user (issue 23's measure).
#   users:   reads by 400,000 distinct signed-in users (USERS=…), each its own token, then a
#            250,000-unit flash sale with a distinct buyer each (BUYERS=…): answers/s by 10-s
#            slice, whether the cost per user stays flat as the users seen grow (issue 23).
#   frozen:  reads (64 connections) with Redis well, then with the stack's Redis stopped with
#            SIGSTOP (accepting, never answering) for the whole run: reads fall back to
#            PostgreSQL within their deadline. Redis is sent SIGCONT at the end, whatever happens.
#   cluster: the whole system with one command-api, and with three (members in the stack's
#            etcd) behind the nginx gateway, alternating for ROUNDS rounds (default 2): a
#            20,000-unit flash sale (CLUSTER_STOCK=…), 256 connections; the commands forwarded
#            and the batches decided again after a lost race, from the instances' /metrics.
#   holds:   the whole system, a flash sale with checkout holds (HOLDS_STOCK=…, default 20,000
#            units; 256 connections): each checkout holds a unit, then confirms it (70 %),
#            releases it (20 %) or lets it expire after 5 s (10 %), beside the same sale ordered
#            straight away; ROUNDS rounds (default 2), alternating. Checkouts/s, orders/s, p99,
#            freshness, the expiries' lateness, and the stock against the log.
# PHASE=system, PHASE=read, PHASE=write, PHASE=auth, PHASE=signin, PHASE=users, PHASE=frozen,
# PHASE=ab, PHASE=cluster, PHASE=holds or PHASE=rebuild runs one phase.
# Starts the release services it needs and stops exactly those. Loopback only; every load is
# bounded in requests.  SCALE=small scripts/bench.sh for a quick run.
# Each run works in databases of its own (dropped at the end), topics of its own
# (`bench-<time>.*` on the stack's broker, deleted at the end) and Redis keys `bench:*`, so the
# dev system (`./dev run`) never inherits its hundreds of thousands of events.
# BENCH_BROKERS=host:port,… runs the whole system against another Kafka (broker comparisons);
# BENCH_BROKER_PID names its process, whose CPU the system phase reports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build -q --release --bins
PROMO_TOPICS_BIN=${CARGO_TARGET_DIR:-target}/release/promo-topics scripts/stack.sh up >/dev/null 2>&1
# shellcheck source=/dev/null
source .stack/env
export APP_KAFKA__BROKERS=${BENCH_BROKERS:-$APP_KAFKA__BROKERS}
# The development secret of config/*.toml: the services started with APP_CONFIG=/nonexistent
# verify with it, and promo-bench mints its tokens with it.
export APP_AUTH__SECRET=dev-only-secret-do-not-use-in-production-0000
target=${CARGO_TARGET_DIR:-target}/release
run=.stack/bench
mkdir -p "$run"
pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_all EXIT

# shellcheck source=scripts/service-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/service-env.sh"
start() {
  local name=$1; shift
  service_env "${name%%#*}" "$@"
  env "${SERVICE_ENV[@]}" nohup "${services:-$target}/${name%%#*}" >"$run/${name//#/-}.log" 2>&1 &
  pids+=($!)
}
ready() {
  for port in "$@"; do
    for _ in $(seq 1 100); do curl -sf -m 2 "http://127.0.0.1:$port/ready" >/dev/null && continue 2; sleep 0.1; done
    echo "the service on port $port did not become ready; see $run/*.log" >&2
    exit 1
  done
}
# A fresh database for a phase; prints its URL.
fresh_db() {
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null
  echo "${DATABASE_URL%/*}/$1"
}
drop_db() { psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1"; }
# A failed check prints FAIL and the run goes on to the next scenario.
bench() { "$target/promo-bench" --database-url "$db_url" --query http://127.0.0.1:8181 "$@" || echo "  (exit $?)"; }

if [ "${SCALE:-full}" = small ]; then N=5000; C=200; RATE=2000; else N=100000; C=1000; RATE=10000; fi
echo "# $(date -u +%FT%TZ)  $(nproc) cores  $(free -g | awk '/Mem/{print $2}') GiB  scale=${SCALE:-full}"

# The whole system on a fresh database and topics of its own (the services as ./dev run
# starts them, on other ports). Settings after the database name go to each service that has them.
system_up() {
  db_url=$(fresh_db "$1"); shift
  topics=bench-$(date +%s%N).
  "$target/promo-topics" --prefix "$topics" create >/dev/null
  shared=(APP_DATABASE__URL="$db_url" APP_KAFKA__TOPIC_PREFIX="$topics" APP_REDIS__PREFIX=bench: APP_RATE_LIMIT__PREFIX=bench:rl: "$@")
  start "command-api" APP_CONFIG="${configs:-config}/command-api" APP_SERVER__PORT=8180 "${shared[@]}"
  start "projector" APP_CONFIG="${configs:-config}/projector" APP_SERVER__PORT=8182 "${shared[@]}"
  start "query-api" APP_CONFIG="${configs:-config}/query-api" APP_SERVER__PORT=8181 "${shared[@]}"
  ready 8180 8181
}
system_down() {
  stop_all
  "$target/promo-topics" --prefix "$topics" delete >/dev/null || true
  # KEEP_DB=1 keeps the database and Redis keys for a look afterwards (replay-tools verify).
  if [ -z "${KEEP_DB:-}" ]; then
    drop_db "$1"
    redis-cli -p "${PROMO_REDIS_PORT:-56379}" --scan --pattern 'bench:*' | xargs -r -n 1000 redis-cli -p "${PROMO_REDIS_PORT:-56379}" UNLINK >/dev/null
  fi
}
# The same whole system with three command-api instances as one cluster (members in the
# stack's etcd, under a prefix of this run's) behind the nginx gateway on 8190: the instances
# on 8180, 8183 and 8184.
cluster_up() {
  db_url=$(fresh_db "$1"); shift
  topics=bench-$(date +%s%N).
  "$target/promo-topics" --prefix "$topics" create >/dev/null
  shared=(APP_DATABASE__URL="$db_url" APP_KAFKA__TOPIC_PREFIX="$topics" APP_REDIS__PREFIX=bench: APP_RATE_LIMIT__PREFIX=bench:rl: "$@")
  local k ports=(8180 8183 8184)
  for k in 0 1 2; do
    start "command-api#$k" APP_CONFIG=config/command-api APP_SERVER__PORT="${ports[$k]}" \
      APP_CLUSTER__ETCD="$PROMO_ETCD" APP_CLUSTER__NODE="bench-$k" APP_CLUSTER__GRPC_PORT=$((9191 + k)) \
      APP_CLUSTER__PREFIX="/promo-bench/$topics/" "${shared[@]}"
  done
  start "projector" APP_CONFIG=config/projector APP_SERVER__PORT=8182 "${shared[@]}"
  start "query-api" APP_CONFIG=config/query-api APP_SERVER__PORT=8181 "${shared[@]}"
  scripts/gateway.sh run "$run/gateway" 8190 8181 "${ports[@]}" >"$run/gateway.log" 2>&1 &
  pids+=($!)
  ready "${ports[@]}" 8181
  # Writes once every instance counts three members and the handover (1 s) has passed.
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      curl -sf -m 2 "http://127.0.0.1:$port/metrics" | grep -q '^cluster_members{[^}]*} 3$' && continue 2
      sleep 0.1
    done
    echo "the instance on port $port did not see three members; see $run/*.log" >&2
    exit 1
  done
  sleep 1.5
}
# The sum of a counter's samples over the instances on ports "${@:2}": the lines that match
# the extended pattern ^$1 (the name, and labels if given).
counter_sum() {
  local series=$1 port total=0 value
  shift
  for port in "$@"; do
    # (a counter not incremented yet is not exported: 0)
    value=$({ curl -sf -m 2 "http://127.0.0.1:$port/metrics" || true; } | { grep -E "^$series" || true; } | awk '{s += $NF} END {print s + 0}')
    total=$(echo "$total + $value" | bc)
  done
  echo "$total"
}
cluster_counts() {
  echo "  forwarded: $(counter_sum 'cluster_forwarded_total\{[^}]*outcome="answered"' "$@") answered, $(counter_sum 'cluster_forwarded_total\{[^}]*outcome="failed"' "$@") failed, $(counter_sum 'cluster_forwarded_total\{[^}]*outcome="skipped"' "$@") skipped; batches decided again after a lost race: $(counter_sum 'writer_races_total[ {]' "$@")"
}

# CPU ticks (utime + stime) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Per-process CPU over $1 seconds with no traffic, as % of one core.
idle_cpu() {
  local seconds=$1 hz before=() after=() names=(command-api projector query-api) i
  hz=$(getconf CLK_TCK)
  for i in 0 1 2; do before[$i]=$(ticks "${pids[$i]}"); done
  sleep "$seconds"
  for i in 0 1 2; do after[$i]=$(ticks "${pids[$i]}"); done
  printf '  idle CPU over %s s, %% of one core:' "$seconds"
  for i in 0 1 2; do
    printf ' %s %s' "${names[$i]}" "$(echo "scale=2; (${after[$i]} - ${before[$i]}) * 100 / $hz / $seconds" | bc)"
  done
  echo
}

# The broker's CPU while "$@" runs (a bench, which waits until Kafka holds every event), per
# 100,000 events of the log.
broker_pid=${BENCH_BROKER_PID:-$(cat .stack/kafka.pid 2>/dev/null || echo)}
with_broker_cpu() {
  local before after events hz
  hz=$(getconf CLK_TCK)
  before=$(ticks "$broker_pid" 2>/dev/null || echo 0)
  "$@"
  after=$(ticks "$broker_pid" 2>/dev/null || echo 0)
  events=$(psql "$db_url" -tAc 'SELECT count(*) FROM events')
  echo "  broker CPU: $(echo "scale=1; ($after - $before) / $hz" | bc) s for $events events, $(echo "scale=1; ($after - $before) * 100000 / $hz / $events" | bc) s per 100,000"
}

if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = system ]; then
echo "## whole system (command-api with its relay, projector, query API, broker)"
system_up promo_bench_system
idle_cpu 10
system=(--command http://127.0.0.1:8180 --label whole-system --relay)
with_broker_cpu bench "${system[@]}" --concurrency 256 flash-sale --stock "$N"
system_down promo_bench_system
system_up promo_bench_system
with_broker_cpu bench "${system[@]}" --concurrency "$C" --rate "$RATE" flash-sale --stock "$N"
system_down promo_bench_system
# The same closed loop with the command API alone (no relay, no read side), same minute: what
# the rest of the system costs the write path.
db_url=$(fresh_db promo_bench_alone)
start "command-api" -u APP_KAFKA__BROKERS APP_CONFIG=/nonexistent APP_SERVER__PORT=8180 APP_DATABASE__URL="$db_url"
ready 8180
bench --command http://127.0.0.1:8180 --label write-path-alone --write-only --concurrency 256 flash-sale --stock "$N"
stop_all
drop_db promo_bench_alone
fi
if [ "${PHASE:-all}" = holds ]; then
echo "## a flash sale with checkout holds (the whole system), against the same sale ordered straight away"
holds_stock=${HOLDS_STOCK:-20000}
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "### round $round"
  for kind in holds orders; do
    system_up promo_bench_holds
    if [ "$kind" = holds ]; then
      bench --command http://127.0.0.1:8180 --label whole-system --relay --concurrency 256 holds --stock "$holds_stock" --ttl 5
    else
      bench --command http://127.0.0.1:8180 --label whole-system --relay --concurrency 256 flash-sale --stock "$holds_stock"
    fi
    system_down promo_bench_holds
  done
done
fi
if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = read ]; then
echo "## reads and the mixed load (the whole system)"
system_up promo_bench_read
bench --command http://127.0.0.1:8180 --label whole-system --concurrency 256 reads --requests "$((N * 2))"
bench --command http://127.0.0.1:8180 --label whole-system --concurrency 64 reads --requests "$((N * 2))"
bench --command http://127.0.0.1:8180 --label whole-system --concurrency 300 --relay mixed --stock "$((N / 10))" --users "$N" --requests "$((N / 10))"
system_down promo_bench_read
fi
if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = write ]; then
echo "## write path alone (no relay, no projector, no query API)"
single=(--command http://127.0.0.1:8180 --label single-writer --write-only)
# Each scenario on a fresh database: it does not inherit the previous one's rows (or its
# autovacuum).
on_fresh_db() {
  db_url=$(fresh_db promo_bench_write)
  start "command-api" -u APP_KAFKA__BROKERS APP_CONFIG=/nonexistent APP_SERVER__PORT=8180 APP_DATABASE__URL="$db_url"
  ready 8180
}
done_with_db() { stop_all; drop_db promo_bench_write; }
on_fresh_db
bench "${single[@]}" --concurrency "$C" flash-sale --stock "$N"
done_with_db
on_fresh_db
bench "${single[@]}" --concurrency "$C" coupon-race --total "$N"
done_with_db
on_fresh_db
bench "${single[@]}" --concurrency "$C" points --users "$N" --requests "$((N / 2))"
done_with_db
# Open loop: a fixed arrival rate (at most $C in flight), latency counted from when each
# request was due: the latency of a sale the server keeps up with.
on_fresh_db
bench "${single[@]}" --concurrency "$C" --rate "$RATE" flash-sale --stock "$N"
done_with_db
on_fresh_db
bench "${single[@]}" --concurrency "$C" --rate "$RATE" coupon-race --total "$N"
done_with_db
fi
if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = auth ]; then
echo "## authentication and rate limits on vs off (the whole system, closed loop, alternating)"
tokens_only=(APP_RATE_LIMIT__ENABLED=false)
off=(APP_AUTH__ENABLED=false APP_RATE_LIMIT__ENABLED=false)
# The order turns each round (the runs of one round drift as the stack ages): compare each
# round's settings with each other, then take the median of the rounds.
orders=("on tokens_only off" "off on tokens_only" "tokens_only off on")
for round in $(seq 1 "${ROUNDS:-3}"); do
  for variant in ${orders[$(((round - 1) % 3))]}; do
    case $variant in on) settings=() ;; tokens_only) settings=("${tokens_only[@]}") ;; off) settings=("${off[@]}") ;; esac
    system_up promo_bench_auth "${settings[@]}"
    redis_pid=$(cat .stack/redis.pid)
    before=$(ticks "$redis_pid"); started=$(date +%s%N)
    bench --command http://127.0.0.1:8180 --label "auth-$variant-$round" --concurrency 256 flash-sale --stock "$N"
    used=$(( ($(ticks "$redis_pid") - before) * 1000000000 * 100 / $(getconf CLK_TCK) / ($(date +%s%N) - started) ))
    echo "  redis-server CPU during the run: $used % of a core, command-api $(( $(ticks "${pids[0]}") * 100 / $(getconf CLK_TCK) )) CPU-seconds ×100 in all"
    system_down promo_bench_auth
  done
done
fi
if [ "${PHASE:-all}" = signin ]; then
echo "## what sign-in and limits cost when every request is another user (write path alone, points, alternating)"
orders=("on off" "off on")
for round in $(seq 1 "${ROUNDS:-3}"); do
  for variant in ${orders[$(((round - 1) % 2))]}; do
    case $variant in on) settings=() ;; off) settings=(APP_AUTH__ENABLED=false APP_RATE_LIMIT__ENABLED=false) ;; esac
    db_url=$(fresh_db promo_bench_signin)
    start "command-api" -u APP_KAFKA__BROKERS APP_CONFIG=/nonexistent APP_SERVER__PORT=8180 APP_DATABASE__URL="$db_url" APP_RATE_LIMIT__PREFIX=bench:rl: "${settings[@]}"
    ready 8180
    bench --command http://127.0.0.1:8180 --label "signin-$variant-$round" --write-only --concurrency 256 points --users 100000 --requests 50000
    stop_all
    drop_db promo_bench_signin
  done
done
fi
if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = users ]; then
echo "## distinct users (the whole system): each read by another signed-in user, then a flash sale with a buyer each"
if [ "${SCALE:-full}" = small ]; then U=40000; B=25000; else U=${USERS:-400000}; B=${BUYERS:-250000}; fi
system_up promo_bench_users
bench --command http://127.0.0.1:8180 --label distinct-users --concurrency 64 user-reads --users "$U"
system_down promo_bench_users
system_up promo_bench_buyers
bench --command http://127.0.0.1:8180 --label distinct-buyers --concurrency 256 flash-sale --stock "$B"
system_down promo_bench_buyers
fi
if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = frozen ]; then
echo "## reads with Redis frozen (SIGSTOP: it accepts and never answers) against Redis well, one system"
system_up promo_bench_frozen
redis_pid=$(cat .stack/redis.pid)
bench --command http://127.0.0.1:8180 --label redis-well --concurrency 64 reads --requests "$N"
# Resumed whatever happens (the stack's Redis serves the dev system too), then the services
# stopped as the script's own trap does.
trap 'kill -CONT "$redis_pid" 2>/dev/null || true; stop_all' EXIT
kill -STOP "$redis_pid"
bench --command http://127.0.0.1:8180 --label redis-frozen --concurrency 64 reads --requests "$N"
kill -CONT "$redis_pid"
trap stop_all EXIT
system_down promo_bench_frozen
fi
if [ "${PHASE:-all}" = ab ]; then
echo "## this build against ${BASELINE:?BASELINE=<release dir of the earlier build>} (the whole system, closed loop, alternating)"
for round in $(seq 1 "${ROUNDS:-3}"); do
  if [ $((round % 2)) = 1 ]; then order="new baseline"; else order="baseline new"; fi
  for variant in $order; do
    # The baseline reads the settings files of its own day (BASELINE_CONFIG, default
    # config/): every service refuses a key it does not know.
    if [ "$variant" = baseline ]; then services=$BASELINE; configs=${BASELINE_CONFIG:-config}; else services=$target; configs=config; fi
    system_up promo_bench_ab
    # shellcheck disable=SC2086 # AB_SCENARIO is words: a scenario and its arguments
    bench --command http://127.0.0.1:8180 --label "ab-$variant-$round" --relay --concurrency 256 ${AB_SCENARIO:-flash-sale --stock $N}
    system_down promo_bench_ab
  done
done
services=$target
configs=config
fi
if [ "${PHASE:-all}" = cluster ]; then
echo "## one command-api against three behind the nginx gateway (the whole system each time, alternating)"
S=${CLUSTER_STOCK:-$((N / 5))}
for round in $(seq 1 "${ROUNDS:-2}"); do
  if [ $((round % 2)) = 1 ]; then order="one three"; else order="three one"; fi
  for variant in $order; do
    if [ "$variant" = one ]; then
      system_up promo_bench_cluster
      bench --command http://127.0.0.1:8180 --label "one-instance-$round" --relay --concurrency 256 flash-sale --stock "$S"
      cluster_counts 8180
    else
      cluster_up promo_bench_cluster
      bench --command http://127.0.0.1:8190 --label "three-instances-gateway-$round" --relay --concurrency 256 flash-sale --stock "$S"
      cluster_counts 8180 8183 8184
    fi
    system_down promo_bench_cluster
  done
done
fi
if [ "${PHASE:-all}" = rebuild ] || [ "${PHASE:-all}" = all ]; then
echo "## rebuild (replay-tools, fresh database)"
db=promo_rebuild_bench
db_url=$(fresh_db $db)
start "command-api" -u APP_KAFKA__BROKERS APP_CONFIG=/nonexistent APP_SERVER__PORT=8180 APP_DATABASE__URL="$db_url"
ready 8180
if [ "${SCALE:-full}" = small ]; then S=20000; else S=470000; fi
fill=(--command http://127.0.0.1:8180 --label fill --write-only --concurrency 500)
bench "${fill[@]}" flash-sale --stock "$S"
bench "${fill[@]}" coupon-race --total "$((S * 2 / 3))"
bench "${fill[@]}" points --users "$((S / 4))" --requests "$((S * 2 / 3))"
stop_all
echo "events in the log: $(psql "$db_url" -tAc 'SELECT count(*) FROM events')"
tools=("$target/replay-tools" --database-url "$db_url" --prefix "rebuild-bench:")
/usr/bin/time -f "rebuild: %e s wall, %M KiB max RSS" "${tools[@]}" rebuild --grace-ms 0
/usr/bin/time -f "verify: %e s wall, %M KiB max RSS" "${tools[@]}" verify
"${tools[@]}" rebuild --projection points --grace-ms 0
drop_db $db
redis-cli -p "${PROMO_REDIS_PORT:-56379}" --scan --pattern 'rebuild-bench:*' | xargs -r -n 1000 redis-cli -p "${PROMO_REDIS_PORT:-56379}" UNLINK >/dev/null
fi
