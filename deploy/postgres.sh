#!/usr/bin/env bash
# PostgreSQL for `make test` (the integration tests): Debian's packaged server and
# its cluster tools (pg_lsclusters, pg_createcluster, pg_ctlcluster).
#
#   deploy/postgres.sh start    install if absent, create a cluster if none, start it if down
#                               (remembered in var/postgres.started-by-us), wait until ready,
#                               create role passerelle/passerelle (CREATEDB) and the databases
#   deploy/postgres.sh stop     stop the cluster only if `start` started it
#   deploy/postgres.sh status   exit 0 when the cluster is up, 3 when not
#   deploy/postgres.sh port     print the cluster's port
#
# Environment:
#   POSTGRES_PORT      port for a cluster that has to be created (default 5432); an existing
#                      cluster keeps its own port, which `start` and `port` print
#   POSTGRES_CLUSTER   "<version>/<name>" to pick a cluster (default: the first one listed)
#
# Needs root (apt-get, runuser). The server itself always runs as the postgres user:
# pg_ctlcluster switches to the cluster's owner.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VAR="$REPO/var"
MARKER="$VAR/postgres.started-by-us"

DB_USER=passerelle
DB_PASSWORD=passerelle
DATABASES="passerelle_intake passerelle_partners passerelle_funding passerelle_followup passerelle_audit"

say() { echo "postgres.sh: $*"; }
die() { echo "postgres.sh: $*" >&2; exit 1; }

as_postgres() {
    # (Callers close fd 9, the start lock, for anything that outlives this script.)
    # From / so that psql, as postgres, is not refused the repository as its working directory.
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -n -u postgres -- "$@")
    fi
}

installed() {
    command -v pg_lsclusters >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

install_server() {
    installed && return 0
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing it needs root"
    say "installing PostgreSQL from Debian's packages ..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
    installed || die "PostgreSQL is still missing after apt-get install"
}

# Sets VER NAME PORT STATUS for the chosen cluster; returns 1 when there is none.
pick_cluster() {
    local line
    if [ -n "${POSTGRES_CLUSTER:-}" ]; then
        line="$(pg_lsclusters -h | awk -v v="${POSTGRES_CLUSTER%%/*}" -v n="${POSTGRES_CLUSTER##*/}" '$1==v && $2==n' | head -n1)"
    else
        line="$(pg_lsclusters -h | head -n1)"
    fi
    [ -n "$line" ] || return 1
    read -r VER NAME PORT STATUS _ <<<"$line"
}

cluster_up() { pg_lsclusters -h | awk -v v="$VER" -v n="$NAME" '$1==v && $2==n {print $4}' | grep -q '^online'; }

ensure_cluster() {
    if pick_cluster; then
        return 0
    fi
    [ -z "${POSTGRES_CLUSTER:-}" ] || die "no cluster $POSTGRES_CLUSTER (see pg_lsclusters)"
    local ver
    ver="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
    say "no cluster yet: creating $ver/main on port ${POSTGRES_PORT:-5432}"
    pg_createcluster "$ver" main -p "${POSTGRES_PORT:-5432}" >/dev/null
    pick_cluster || die "pg_createcluster did not create a cluster"
}

# Light tuning for the test suite (it may open ~100 connections). Read at server start.
tune() {
    local confd="/etc/postgresql/$VER/$NAME/conf.d"
    [ -d "$confd" ] || return 0
    local f="$confd/passerelle-tests.conf"
    if [ ! -f "$f" ]; then
        cat > "$f" <<'EOF'
# Written by Passerelle's deploy/postgres.sh: room for the test suite's connection pools.
max_connections = 200
EOF
    fi
}

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"; }

wait_ready() {
    local deadline=$((SECONDS + 60))
    until pg_isready -q -h 127.0.0.1 -p "$PORT" && psql_admin -Atc 'select 1' >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || {
            tail -n 30 "/var/log/postgresql/postgresql-$VER-$NAME.log" >&2 2>/dev/null || true
            die "PostgreSQL $VER/$NAME not ready on port $PORT after 60s"
        }
        sleep 0.3
    done
}

create_role_and_databases() {
    psql_admin <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
  ELSE
    ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
  END IF;
END
\$\$;
-- DROP DATABASE ... WITH (FORCE) (the tests' clean-up) must also end an autovacuum
-- worker that happens to be in the database; PostgreSQL 15 asks for this role.
GRANT pg_signal_backend TO $DB_USER;
SQL
    local db
    for db in $DATABASES; do
        psql_admin <<SQL
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$DB_USER')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')
\gexec
ALTER DATABASE $db OWNER TO $DB_USER;
SQL
    done
}

tcp_login_works() {
    PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -h 127.0.0.1 -p "$PORT" -U "$DB_USER" \
        -d passerelle_intake -Atc 'select 1' 2>/dev/null | grep -qx 1
}

ensure_tcp_password_auth() {
    tcp_login_works && return 0
    # Debian's default pg_hba.conf allows scram-sha-256 from 127.0.0.1; add a rule if it doesn't.
    local hba
    hba="$(psql_admin -Atc 'show hba_file')"
    say "password login over 127.0.0.1 refused: adding a rule for $DB_USER to $hba"
    local tmp
    tmp="$(mktemp)"
    { echo "host all $DB_USER 127.0.0.1/32 scram-sha-256  # added by Passerelle deploy/postgres.sh"; cat "$hba"; } > "$tmp"
    cat "$tmp" > "$hba"
    rm -f "$tmp"
    psql_admin -Atc 'select pg_reload_conf()' >/dev/null
    sleep 0.5
    tcp_login_works || die "password login as $DB_USER on 127.0.0.1:$PORT still fails"
}

cmd_start() {
    install_server
    mkdir -p "$VAR"
    exec 9>"$VAR/postgres.lock"
    flock 9
    ensure_cluster
    tune
    if cluster_up; then
        say "cluster $VER/$NAME already running on port $PORT"
        local maxc
        maxc="$(psql_admin -Atc 'show max_connections' 2>/dev/null || echo '?')"
        if [ "$maxc" != "?" ] && [ "$maxc" -lt 200 ]; then
            if [ -f "$MARKER" ]; then
                say "max_connections is $maxc: restarting the cluster (we started it) to get 200"
                pg_ctlcluster "$VER" "$NAME" restart 9>&-
            else
                say "warning: max_connections is $maxc (< 200); restart the cluster to apply conf.d/passerelle-tests.conf"
            fi
        fi
    else
        say "starting cluster $VER/$NAME (port $PORT)"
        pg_ctlcluster "$VER" "$NAME" start 9>&-
        echo "$VER $NAME" > "$MARKER"
    fi
    wait_ready
    create_role_and_databases
    ensure_tcp_password_auth
    say "PostgreSQL $VER/$NAME ready on 127.0.0.1:$PORT (user $DB_USER, password $DB_PASSWORD; databases: $DATABASES)"
}

cmd_stop() {
    if [ ! -f "$MARKER" ]; then
        say "not started by us (no $MARKER): leaving PostgreSQL as it is"
        return 0
    fi
    local ver name
    read -r ver name _ < "$MARKER" || true
    if [ -n "${ver:-}" ] && [ -n "${name:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1; then
        if pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $4}' | grep -q '^online'; then
            say "stopping cluster $ver/$name"
            pg_ctlcluster "$ver" "$name" stop -m fast
        else
            say "cluster $ver/$name already down"
        fi
    fi
    rm -f "$MARKER"
}

cmd_status() {
    if ! installed; then say "not installed"; return 3; fi
    if ! pick_cluster; then say "no cluster"; return 3; fi
    if cluster_up; then
        say "cluster $VER/$NAME online on port $PORT$( [ -f "$MARKER" ] && echo ' (started by us)')"
        return 0
    fi
    say "cluster $VER/$NAME down (port $PORT)"
    return 3
}

cmd_port() {
    if installed && pick_cluster; then
        echo "$PORT"
    else
        echo "${POSTGRES_PORT:-5432}"
    fi
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    port)   cmd_port ;;
    *) echo "usage: $0 {start|stop|status|port}" >&2; exit 2 ;;
esac
