# shellcheck shell=bash
# PostgreSQL for the test suite: Debian's cluster 15/main on 127.0.0.1:5432.
#
#   pg_start   make sure the cluster runs and the superuser role gradelab
#              (password gradelab) exists; exports GRADELAB_TEST_PG_URL.
#   pg_stop    stop the cluster (never called by ./gradelab; for people).

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PG_VERSION=15
PG_CLUSTER=main
PG_PORT=5432
PG_ROLE=gradelab
PG_PASSWORD=gradelab
# shellcheck disable=SC2034 # used by ./gradelab
PG_TEST_URL="postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"

# Run psql as the postgres OS user over the local socket (cd / so that psql
# does not complain about an unreadable working directory).
_psql_as_postgres() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && su postgres -s /bin/sh -c "psql -X -q -v ON_ERROR_STOP=1 -p $PG_PORT $*")
  else
    (cd / && sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@")
  fi
}

_pg_cluster_status() {
  # "online", "down", or nothing when the cluster does not exist.
  pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $4 }'
}

_pg_cluster_port() {
  pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $3 }'
}

pg_start() {
  local t0 status port i msg did=()
  t0=$(now)
  command -v pg_lsclusters >/dev/null 2>&1 || die "PostgreSQL is not installed (apt-get install postgresql)"

  status=$(_pg_cluster_status)
  if [[ -z "$status" ]]; then
    as_root pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" >/dev/null ||
      die "pg_createcluster $PG_VERSION $PG_CLUSTER failed"
    did+=("created cluster $PG_VERSION/$PG_CLUSTER")
    status=$(_pg_cluster_status)
  fi
  port=$(_pg_cluster_port)
  [[ "$port" == "$PG_PORT" ]] ||
    die "cluster $PG_VERSION/$PG_CLUSTER is configured for port $port, expected $PG_PORT"
  if [[ "$status" != online* ]]; then
    as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start || {
      tail -n 20 "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log" >&2 || true
      die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
    }
    did+=("started")
  fi
  for ((i = 0; i < 120; i++)); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.25
  done
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"

  export GRADELAB_TEST_PG_URL="postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
  if ! PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -w -h 127.0.0.1 -p "$PG_PORT" \
    -U "$PG_ROLE" -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    # Missing role, or one with another password or without superuser: fix it.
    _psql_as_postgres -d postgres >/dev/null <<SQL || die "could not create the PostgreSQL role $PG_ROLE"
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SQL
    did+=("role $PG_ROLE set up")
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -w -h 127.0.0.1 -p "$PG_PORT" \
      -U "$PG_ROLE" -d postgres -tAc 'select 1' >/dev/null ||
      die "cannot log in as $PG_ROLE on 127.0.0.1:$PG_PORT (check pg_hba.conf)"
  fi
  # Test databases left by an earlier run (see PgDatabase in tests/src/lib.rs).
  local stale
  stale=$(PGPASSWORD=$PG_PASSWORD psql -X -q -w -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" \
    -d postgres -tAc "select datname from pg_database where datname like 'gradelab\_test\_%'" 2>/dev/null || true)
  if [[ -n "$stale" ]]; then
    while IFS= read -r db; do
      PGPASSWORD=$PG_PASSWORD psql -X -q -w -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" \
        -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done <<<"$stale"
    did+=("dropped $(wc -l <<<"$stale") leftover test database(s)")
  fi
  if [[ ${#did[@]} -eq 0 ]]; then did=("already running"); fi
  msg=$(printf '%s, ' "${did[@]}")
  log "[postgres] $PG_VERSION/$PG_CLUSTER on 127.0.0.1:$PG_PORT: ${msg%, } ($(elapsed "$t0")s)"
}

pg_stop() {
  if [[ "$(_pg_cluster_status)" == online* ]]; then
    as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop
    log "[postgres] $PG_VERSION/$PG_CLUSTER stopped"
  fi
}
