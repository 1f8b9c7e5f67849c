#!/usr/bin/env bash
# One Apache Kafka node (KRaft: broker and controller in one JVM) on 127.0.0.1 — the only place
# that knows how one is installed, configured and started. scripts/stack.sh runs the stack's
# node through it; the end-to-end tests run their private brokers and three-node clusters
# through it too (e2e/src/servers.rs), so all of them are configured alike (ADR 13).
#
#   scripts/kafka/node.sh install    fetch the broker's jars from Maven Central into
#                                    $PROMO_KAFKA_HOME (once; reused while present)
#   scripts/kafka/node.sh version    the version installed (or to be installed)
#   scripts/kafka/node.sh run --dir DIR --port PORT --controller-port PORT
#                             [--node-id N --voters 1@127.0.0.1:P,2@127.0.0.1:P,…]
#       formats DIR on first use, then runs the node in the foreground (exec: its pid is the
#       JVM's, so kill -9 of it is a broker crash). Without --voters: a single node, its own
#       quorum (`--standalone`), every internal topic with one replica. With --voters: one
#       node of a static quorum of that many nodes, replication factor 3 (or the count of
#       voters when fewer), min.insync.replicas 2.
#
# Environment: PROMO_KAFKA_VERSION (default 4.4.0), PROMO_KAFKA_HOME (default
# ~/.cache/promo-kafka/<version>, outside any clone), PROMO_KAFKA_HEAP (default 512m).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${PROMO_KAFKA_VERSION:-4.4.0}
HOME_DIR=${PROMO_KAFKA_HOME:-$HOME/.cache/promo-kafka/$VERSION}
HEAP=${PROMO_KAFKA_HEAP:-512m}
# Any base64 UUID; fixed, so the nodes of one cluster format alike without talking first.
CLUSTER_ID=${PROMO_KAFKA_CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}

log() { printf '[kafka] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

installed() { [ -f "$HOME_DIR/libs/kafka_2.13-$VERSION.jar" ]; }

# Java 17 and Maven: present on the project's machines; Debian's packages otherwise.
install_tools() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get) or run as root"
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install() {
  installed && return
  install_tools
  log "fetching Apache Kafka $VERSION from Maven Central into $HOME_DIR (once, ~30 s)"
  local staging=$HOME_DIR/libs.partial
  rm -rf "$staging"
  mkdir -p "$staging"
  mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" -Dkafka.version="$VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging" >&2 ||
    die "mvn could not fetch org.apache.kafka:kafka_2.13:$VERSION"
  rm -rf "$HOME_DIR/libs"
  mv "$staging" "$HOME_DIR/libs"
  installed || die "kafka_2.13-$VERSION.jar missing after the fetch"
}

java_run() {
  # G1 with short pauses as Kafka's own scripts start it; a heap fit for 2 cores and a
  # machine shared with PostgreSQL and the services. An OutOfMemoryError ends the process
  # instead of leaving a half-working broker.
  exec java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -cp "$HOME_DIR/libs/*" "$@"
}

run() {
  local dir="" port="" controller_port="" node_id=1 voters=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --controller-port) controller_port=$2; shift 2 ;;
      --node-id) node_id=$2; shift 2 ;;
      --voters) voters=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] && [ -n "$port" ] && [ -n "$controller_port" ] ||
    die "run needs --dir, --port and --controller-port"
  install
  mkdir -p "$dir/data"
  local replicas=1 min_isr=1 quorum
  if [ -n "$voters" ]; then
    local count
    count=$(tr ',' '\n' <<<"$voters" | grep -c .)
    replicas=$((count < 3 ? count : 3))
    min_isr=$((replicas > 1 ? 2 : 1))
    quorum="controller.quorum.voters=$voters"
  else
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$controller_port"
  fi
  cat >"$dir/server.properties" <<PROPS
# Written by scripts/kafka/node.sh at every start; edit the script, not this file.
process.roles=broker,controller
node.id=$node_id
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
$quorum
log.dirs=$dir/data
# The system's topics are created by promo-topics with their partitions and retention; a
# publish to a missing topic fails instead of creating one with the broker's defaults.
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
# How soon a dead node is fenced and its partitions get new leaders (and leave the other
# partitions' in-sync replicas, so acks=all writes go on): 6 s instead of 9 (ADR 13).
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
# A consumer group forms at once (the default waits 3 s for more members).
group.initial.rebalance.delay.ms=0
# Two cores: fewer request and network threads than the defaults (8 and 3).
num.io.threads=4
num.network.threads=2
PROPS
  if [ ! -f "$dir/data/meta.properties" ]; then
    local format=(format -t "$CLUSTER_ID" -c "$dir/server.properties")
    # A single node is its own dynamic quorum; --standalone and controller.quorum.voters
    # do not mix.
    [ -z "$voters" ] && format+=(--standalone)
    log "formatting $dir/data (node $node_id)"
    (java_run kafka.tools.StorageTool "${format[@]}") >"$dir/format.log" 2>&1 ||
      die "formatting $dir/data failed: $(tail -n 5 "$dir/format.log")"
  fi
  java_run kafka.Kafka "$dir/server.properties"
}

case "${1:-}" in
  install) install ;;
  version) echo "$VERSION" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
