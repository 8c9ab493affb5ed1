#!/usr/bin/env bash
# The body of `make test` (and so of .ci/run): PostgreSQL, a clean Kafka for tests on
# 19092/19093 (data var/test-kafka, wiped at each run), the development keys
# (`python -m shared.cli keys`), the console's browser and identity provider (Debian's chromium and
# chromium-driver with apt-get, the provider's npm packages with `npm ci`, each when missing), then
# pytest; PostgreSQL and Kafka stopped on exit.
#
#   deploy/test.sh [PYTEST ARGS...]     .venv/bin/python -m pytest -q -p no:cacheprovider ARGS
#   deploy/test.sh --bench [ARGS...]    .venv/bin/python -m bench ARGS, with the same infrastructure
#
# Exported for the tests: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 (TEST_KAFKA_PORT) PASSERELLE_TEST_POSTGRES=1
#   POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=<cluster port> POSTGRES_USER=passerelle POSTGRES_PASSWORD=passerelle
# TEST_KAFKA_PORT / TEST_KAFKA_CONTROLLER_PORT (default 19092 / 19093) move the test broker, e.g.
# for a second clone running its tests at the same time.
# PASSERELLE_ALLOW_NO_TESTS=1 turns pytest's "no tests collected" (exit 5) into success (.ci/run sets it).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || { echo "test.sh: no $PY: run 'make setup' first" >&2; exit 2; }

MODE=pytest
if [ "${1:-}" = "--bench" ]; then
    MODE=bench
    shift
fi

TEST_KAFKA_PORT="${TEST_KAFKA_PORT:-19092}"
TEST_KAFKA_CONTROLLER_PORT="${TEST_KAFKA_CONTROLLER_PORT:-19093}"
TEST_KAFKA_DIR="$REPO/var/test-kafka"
test_kafka() {
    KAFKA_PORT="$TEST_KAFKA_PORT" KAFKA_CONTROLLER_PORT="$TEST_KAFKA_CONTROLLER_PORT" KAFKA_DATA_DIR="$TEST_KAFKA_DIR" \
        "$REPO/deploy/kafka.sh" "$@"
}
# The secured-profile broker the partner feed tests start and stop themselves
# (tests/integration/secured_kafka.py); stopped here too, should pytest be killed.
secured_test_kafka_stop() {
    KAFKA_SECURITY=sasl KAFKA_PORT="${SECURED_KAFKA_PORT:-59092}" \
        KAFKA_CONTROLLER_PORT="${SECURED_KAFKA_CONTROLLER_PORT:-59093}" \
        KAFKA_DATA_DIR="${SECURED_KAFKA_DIR:-$REPO/var/test-kafka-secured}" "$REPO/deploy/kafka.sh" stop
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo "test.sh: stopping test infrastructure"
    test_kafka stop || true
    secured_test_kafka_stop || true
    "$REPO/deploy/postgres.sh" stop || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The console's browser tests (tests/e2e/test_console_browser.py): Debian's chromium and its
# matching driver, and the identity provider's packages (deploy/idp, exact versions of its lock file).
if [ "$MODE" = pytest ]; then
    if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
        if [ "$(id -u)" = 0 ]; then
            echo "test.sh: installing chromium and chromium-driver from Debian's packages ..."
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
        else
            echo "test.sh: chromium and chromium-driver are missing and installing them needs root;" \
                 "the console's browser tests will fail" >&2
        fi
    fi
    "$PY" -c "from deploy import idp; idp.install()"
    [ -f tests/e2e/axe/node_modules/axe-core/axe.min.js ] \
        || (cd tests/e2e/axe && npm ci --no-audit --no-fund --loglevel=error)
fi

started=$SECONDS
"$REPO/deploy/postgres.sh" start
POSTGRES_PORT="$("$REPO/deploy/postgres.sh" port)"

# A clean broker for every run (a leftover one from an interrupted run is stopped first).
test_kafka stop >/dev/null
rm -rf "$TEST_KAFKA_DIR"
test_kafka start
echo "test.sh: infrastructure ready in $((SECONDS - started))s"

# The development keys, outside the repository (PASSERELLE_KEYS_DIR, else
# $XDG_DATA_HOME/passerelle/keys or ~/.local/share/passerelle/keys): what the bench's services
# and a test run with default settings use. Tests that make their own services keep throw-away
# keys under their tmp_path.
"$PY" -m shared.cli keys

export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$TEST_KAFKA_PORT
export PASSERELLE_TEST_POSTGRES=1
export POSTGRES_HOST=127.0.0.1
export POSTGRES_PORT
export POSTGRES_USER=passerelle
export POSTGRES_PASSWORD=passerelle

set +e
if [ "$MODE" = bench ]; then
    # wrk drives part 1's HTTP load (a C client: its CPU does not compete with the service's).
    if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 \
            || echo "test.sh: wrk not installed; part 1 falls back to httpx" >&2
    fi
    "$PY" -m bench "$@"
    rc=$?
else
    "$PY" -m pytest -q -p no:cacheprovider "$@"
    rc=$?
    if [ "$rc" = 5 ] && [ "${PASSERELLE_ALLOW_NO_TESTS:-0}" = 1 ]; then
        echo "test.sh: pytest collected no tests (exit 5), accepted because PASSERELLE_ALLOW_NO_TESTS=1"
        rc=0
    fi
fi
set -e
exit "$rc"
