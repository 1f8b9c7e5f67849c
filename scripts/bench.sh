#!/usr/bin/env bash
# The benchmark (docs/benchmarks.md), in two phases on the local stack:
#   read:  relay + projector + query API: reads, freshness under a moderate flash sale, and
#          the mixed load (orders, points and reads at once).
#          First, while the log is small: the relay must publish every event in order, and the
#          broker here (tansu, sqlite) slows as it stores more (ADR 6).
#   write: every write scenario against the single-writer command API and, in the same run,
#          against a naive one (one transaction per command, optimistic concurrency, retries);
#          then flash sale and coupon race open loop at a fixed rate (latency from when each
#          request was due); no relay, so the broker does not compete for the 2 cores.
#          Checked against the log.
#   rebuild: a fresh database filled through the command API with ~1,000,000 events (flash
#          sale, coupon race, points), then `replay-tools rebuild` and `verify` over it.
# PHASE=read, PHASE=write or PHASE=rebuild runs one phase.
# Starts the release services it needs and stops exactly those. Loopback only; every load is
# bounded in requests.  SCALE=small scripts/bench.sh for a quick run.
# Each run works in databases of its own (dropped at the end), topics of its own
# (`bench-<time>.*`: a topic must never carry two logs' events) and Redis keys `bench:*`, so
# the dev system (`./dev run`) never inherits its hundreds of thousands of events.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/stack.sh up >/dev/null 2>&1
# shellcheck source=/dev/null
source .stack/env
cargo build -q --release --bins
target=${CARGO_TARGET_DIR:-target}/release
run=.stack/bench
mkdir -p "$run"
pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_all EXIT

start() {
  local name=$1; shift
  env "$@" nohup "$target/${name%%#*}" >"$run/${name//#/-}.log" 2>&1 &
  pids+=($!)
}
ready() { for port in "$@"; do for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done; done; }
# A fresh database for a phase; prints its URL.
fresh_db() {
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null
  echo "${DATABASE_URL%/*}/$1"
}
drop_db() { psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1"; }
# A failed check prints FAIL and the run goes on to the next scenario.
bench() { "$target/promo-bench" --database-url "$db_url" --query http://127.0.0.1:8181 "$@" || echo "  (exit $?)"; }

if [ "${SCALE:-full}" = small ]; then N=5000; C=200; NAIVE=1000; RATE=2000; else N=100000; C=1000; NAIVE=3000; RATE=10000; fi
echo "# $(date -u +%FT%TZ)  $(nproc) cores  $(free -g | awk '/Mem/{print $2}') GiB  scale=${SCALE:-full}"

if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = read ]; then
echo "## read side (relay, projector, query API)"
db_url=$(fresh_db promo_bench_read)
topics=bench-$(date +%s).
"$target/promo-topics" --prefix "$topics" create >/dev/null
shared=(APP_DATABASE__URL="$db_url" APP_KAFKA__TOPIC_PREFIX="$topics" APP_REDIS__PREFIX=bench:)
start "command-api" APP_CONFIG=config/command-api APP_SERVER__PORT=8180 "${shared[@]}"
start "projector" APP_CONFIG=config/projector APP_KAFKA__GROUP="${topics%.}" "${shared[@]}"
start "query-api" APP_CONFIG=config/query-api APP_SERVER__PORT=8181 "${shared[@]}"
ready 8180 8181
bench --command http://127.0.0.1:8180 --label single-writer --concurrency 256 reads --requests "$((N * 2))"
bench --command http://127.0.0.1:8180 --label single-writer --concurrency 64 reads --requests "$((N * 2))"
bench --command http://127.0.0.1:8180 --label single-writer --concurrency 20 flash-sale --stock "$((N / 5))"
bench --command http://127.0.0.1:8180 --label single-writer --concurrency 300 mixed --stock "$((N / 10))" --users "$N" --requests "$((N / 10))"
stop_all
# KEEP_DB=1 keeps the database and Redis keys for a look afterwards (replay-tools verify).
if [ -z "${KEEP_DB:-}" ]; then
  drop_db promo_bench_read
  redis-cli -p "${PROMO_REDIS_PORT:-56379}" --scan --pattern 'bench:*' | xargs -r -n 1000 redis-cli -p "${PROMO_REDIS_PORT:-56379}" UNLINK >/dev/null
fi
fi
if [ "${PHASE:-all}" = all ] || [ "${PHASE:-all}" = write ]; then
echo "## write path (no relay)"
single=(--command http://127.0.0.1:8180 --label single-writer --write-only)
naive=(--command http://127.0.0.1:8190 --label naive --write-only)
# Each scenario on a fresh database, the single writer and the naive path side by side on it:
# a scenario does not inherit the previous one's rows (or its autovacuum).
on_fresh_db() {
  db_url=$(fresh_db promo_bench_write)
  start "command-api" -u APP_KAFKA__BROKERS APP_CONFIG=/nonexistent APP_SERVER__PORT=8180 APP_DATABASE__URL="$db_url"
  start "command-api#naive" -u APP_KAFKA__BROKERS APP_CONFIG=/nonexistent APP_SERVER__PORT=8190 APP_WRITER__MODE=naive APP_DATABASE__URL="$db_url"
  ready 8180 8190
}
done_with_db() { stop_all; drop_db promo_bench_write; }
on_fresh_db
bench "${single[@]}" --concurrency "$C" flash-sale --stock "$N"
bench "${naive[@]}" --concurrency "$C" flash-sale --stock "$N" --requests "$NAIVE"
done_with_db
on_fresh_db
bench "${single[@]}" --concurrency "$C" coupon-race --total "$N"
bench "${naive[@]}" --concurrency "$C" coupon-race --total "$N" --requests "$NAIVE"
done_with_db
on_fresh_db
bench "${single[@]}" --concurrency "$C" points --users "$N" --requests "$((N / 2))"
bench "${naive[@]}" --concurrency "$C" points --users "$N" --requests "$((N / 5))"
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
