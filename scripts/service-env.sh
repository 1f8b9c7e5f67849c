# Sourced by ./dev and scripts/bench.sh: which APP_ variables each service takes. Every service
# refuses a setting it does not have (deny_unknown_fields: a misspelt key is a start-up error),
# so each one is started with only its own — the same table as `takes` in e2e/src/lib.rs.

# takes SERVICE NAME: whether SERVICE has the setting the variable NAME sets.
takes() {
  case "${2#APP_}" in
    # promo-topics' (the topics' shape), read by no service.
    KAFKA__PARTITIONS | KAFKA__REPLICATION | KAFKA__RETENTION_MS) false ;;
    KAFKA__* | WRITER__* | IDEMPOTENCY__* | CLUSTER__*) [ "$1" = command-api ] ;;
    REDIS__PREFIX | REDIS__TIMEOUT_MS | SCHEMA) [ "$1" != command-api ] ;;
    GENERATION_POLL_MS | CONSISTENCY_WAIT_MS | DATABASE__TIMEOUT_MS) [ "$1" = query-api ] ;;
    AUTH__* | RATE_LIMIT__* | DATABASE__MAX_CONNECTIONS) [ "$1" != projector ] ;;
    *) true ;;
  esac
}

# service_env SERVICE [NAME=VALUE | -u NAME]…: sets SERVICE_ENV to the arguments of `env` that start
# SERVICE with the APP_ variables it takes, from this environment and from the arguments.
service_env() {
  local service=$1 name assignment
  shift
  SERVICE_ENV=()
  for name in $(compgen -e); do
    case "$name" in APP_*) takes "$service" "$name" || SERVICE_ENV+=(-u "$name") ;; esac
  done
  while [ $# -gt 0 ]; do
    case "$1" in
      -u) SERVICE_ENV+=(-u "$2"); shift ;;
      APP_*=*) if takes "$service" "${1%%=*}"; then SERVICE_ENV+=("$1"); fi ;;
      *) SERVICE_ENV+=("$1") ;;
    esac
    shift
  done
}
