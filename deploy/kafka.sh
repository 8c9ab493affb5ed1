#!/usr/bin/env bash
# Local Apache Kafka (KRaft, one node that is both broker and controller) for
# `make run` and `make test`. The jars come from Maven Central (deploy/kafka/pom.xml)
# into a cache outside the repository; no Docker, no tarball.
#
#   deploy/kafka.sh fetch      copy the jars into the cache (idempotent, fast when cached)
#   deploy/kafka.sh start      fetch if needed, format the data dir once, start, wait until it answers
#   deploy/kafka.sh stop       TERM, up to 20 s, then KILL; safe when not running
#   deploy/kafka.sh status     exit 0 when running, 3 when not
#   deploy/kafka.sh tool CLASS [ARGS...]   run a Kafka tool class with the cached jars, e.g.
#       deploy/kafka.sh tool org.apache.kafka.tools.consumer.ConsoleConsumer \
#           --bootstrap-server 127.0.0.1:9092 --topic intake.events --from-beginning
#   deploy/kafka.sh consume TOPIC [ARGS...]   shortcut for the console consumer on KAFKA_PORT
#   deploy/kafka.sh access     (secured profile) apply SCRAM users and ACLs read from stdin with
#       Kafka's own Admin API (deploy/kafka/Access.java); `python -m deploy.kafka_access` writes them
#
# Environment:
#   KAFKA_PORT             PLAINTEXT listener on 127.0.0.1   (default 9092)
#   KAFKA_CONTROLLER_PORT  CONTROLLER listener on 127.0.0.1  (default 9093)
#   KAFKA_DATA_DIR         server.properties, logs, pid file, cluster id (default <repo>/var/kafka)
#   KAFKA_HEAP             JVM heap options (default "-Xms256m -Xmx768m")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 60)
#   PASSERELLE_CACHE       jar cache root (default $HOME/.cache/passerelle)
#   KAFKA_SECURITY         "plaintext" (default: no authentication; `make run`, most tests) or "sasl", the
#                          secured profile: SASL_PLAINTEXT with SCRAM-SHA-256 on KAFKA_PORT, KRaft's
#                          StandardAuthorizer (nothing is allowed without an ACL), KAFKA_ADMIN_USER super user
#   KAFKA_ADMIN_USER       the secured profile's super user (default admin); its SCRAM credential is
#   KAFKA_ADMIN_PASSWORD   written when the storage is formatted (required to start with KAFKA_SECURITY=sasl)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
POM="$HERE/kafka/pom.xml"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[ -n "$KAFKA_VERSION" ] || { echo "kafka.sh: no <kafka.version> in $POM" >&2; exit 2; }
CACHE="${PASSERELLE_CACHE:-$HOME/.cache/passerelle}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
MARKER="$KAFKA_HOME/.fetched"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO/var/kafka}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx768m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_SECURITY="${KAFKA_SECURITY:-plaintext}"
KAFKA_ADMIN_USER="${KAFKA_ADMIN_USER:-admin}"
case "$KAFKA_SECURITY" in
    plaintext) ;;
    sasl) [ "${1:-}" != start ] || [ -n "${KAFKA_ADMIN_PASSWORD:-}" ] \
              || { echo "kafka.sh: KAFKA_SECURITY=sasl needs KAFKA_ADMIN_PASSWORD" >&2; exit 2; } ;;
    *) echo "kafka.sh: KAFKA_SECURITY is plaintext or sasl, not $KAFKA_SECURITY" >&2; exit 2 ;;
esac

PIDFILE="$KAFKA_DATA_DIR/kafka.pid"
LOGFILE="$KAFKA_DATA_DIR/kafka.log"
PROPS="$KAFKA_DATA_DIR/server.properties"
LOG4J="$KAFKA_DATA_DIR/log4j2.properties"
CLUSTER_ID_FILE="$KAFKA_DATA_DIR/cluster.id"
LOG_DIRS="$KAFKA_DATA_DIR/logs"

say() { echo "kafka.sh: $*"; }
die() { echo "kafka.sh: $*" >&2; exit 1; }

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

fetched() { [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$(pom_sum)" ]; }

cmd_fetch() {
    if fetched; then
        say "Kafka $KAFKA_VERSION jars already in $LIBS"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn (Maven) is needed to fetch the Kafka jars"
    mkdir -p "$KAFKA_HOME"
    # One fetch at a time per version (make run and make test may start together).
    exec 9>"$KAFKA_HOME/.lock"
    flock 9
    if fetched; then
        say "Kafka $KAFKA_VERSION jars already in $LIBS"
        exec 9>&-
        return 0
    fi
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS ..."
    rm -f "$MARKER"
    local tmp="$KAFKA_HOME/libs.partial"
    rm -rf "$tmp"
    # A copy of the pom in the cache so Maven writes nothing (target/) into the repository.
    cp "$POM" "$KAFKA_HOME/pom.xml"
    if ! (cd "$KAFKA_HOME" && mvn -q -B -Dstyle.color=never -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime) > "$KAFKA_HOME/fetch.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME/fetch.log" >&2
        rm -rf "$tmp"
        die "mvn could not fetch the Kafka jars (log: $KAFKA_HOME/fetch.log)"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "fetch finished without kafka_2.13-$KAFKA_VERSION.jar"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    rm -rf "$KAFKA_HOME/target"
    pom_sum > "$MARKER"
    say "fetched $(ls "$LIBS" | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) into $LIBS"
    exec 9>&-
}

# The pid from the pid file if that process is alive and is our broker for this data dir.
running_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$PROPS" || return 1
    echo "$pid"
}

port_busy() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

# Does the broker on 127.0.0.1:$1 answer a Metadata request listing itself (i.e. it is
# registered with the controller and unfenced) and find a group coordinator? Plain
# sockets, no Kafka client needed.
broker_answers() {
    python3 - "$1" <<'PY'
import socket, struct, sys

def call(sock, api_key, version, body, corr):
    client = b"kafka.sh"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    def recv(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", recv(4))
    data = recv(size)
    (got,) = struct.unpack(">i", data[:4])
    if got != corr:
        raise ValueError("correlation id mismatch")
    return data[4:]

try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3) as s:
        s.settimeout(3)
        # ApiVersions v0: every broker answers it.
        r = call(s, 18, 0, b"", 1)
        (err,) = struct.unpack(">h", r[:2])
        if err != 0:
            sys.exit(1)
        # Metadata v4 (the oldest version Kafka 4.x keeps): no topics, no auto-creation.
        r = call(s, 3, 4, struct.pack(">ib", 0, 0), 2)
        (brokers,) = struct.unpack(">i", r[4:8])
        if brokers < 1:
            sys.exit(1)
        # FindCoordinator v1 for a group: the first call creates __consumer_offsets, so the
        # first consumer group of a test does not wait for it; ready once it answers 0.
        key = b"kafka.sh-ready"
        r = call(s, 10, 1, struct.pack(">h", len(key)) + key + struct.pack(">b", 0), 3)
        (err,) = struct.unpack(">h", r[4:6])
        sys.exit(0 if err == 0 else 1)
except Exception:
    sys.exit(1)
PY
}

# Ready to serve clients? The plain profile asks the broker itself (above). A SASL listener
# answers nothing before authentication, so the secured profile waits for the server's own
# "started" line and an open port; its admin credential exists from the format on.
broker_ready() {
    if [ "$KAFKA_SECURITY" = sasl ]; then
        grep -q "Kafka Server started" "$LOGFILE" 2>/dev/null && port_busy "$KAFKA_PORT"
    else
        broker_answers "$KAFKA_PORT"
    fi
}

# The listeners of the secured profile. Clients, and the broker itself, authenticate with
# SCRAM (credentials live in the cluster metadata); the controller listener, which SCRAM
# cannot serve (it works before the metadata is loaded), takes PLAIN with the admin user of
# its JAAS entry. Every request is then checked by the StandardAuthorizer against the ACLs.
sasl_config() {
    local user="$KAFKA_ADMIN_USER" password="$KAFKA_ADMIN_PASSWORD"
    cat <<EOF
listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$password";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$user" password="$password" user_$user="$password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$user
allow.everyone.if.no.acl.found=false
EOF
}

plaintext_config() {
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
}

write_config() {
    mkdir -p "$KAFKA_DATA_DIR" "$LOG_DIRS"
    ( umask 077; : > "$PROPS" )  # the secured profile writes the admin password into it
    cat > "$PROPS" <<EOF
# Written by deploy/kafka.sh start; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
$(if [ "$KAFKA_SECURITY" = sasl ]; then sasl_config; else plaintext_config; fi)
log.dirs=$LOG_DIRS
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
log.segment.bytes=67108864
EOF
    cat > "$LOG4J" <<'EOF'
# Written by deploy/kafka.sh start: everything to stdout, which goes to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = info
logger.request.name = kafka.request.logger
logger.request.level = warn
# The full config dumps (hundreds of lines per client) only at warn.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
EOF
}

java_opts() {
    # shellcheck disable=SC2206
    local heap=($KAFKA_HEAP)
    printf '%s\n' "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J"
}

format_storage() {
    if [ -f "$LOG_DIRS/meta.properties" ]; then
        return 0
    fi
    if [ ! -s "$CLUSTER_ID_FILE" ]; then
        # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
        python3 -c '
import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not u.startswith("-"):
        print(u)
        break' > "$CLUSTER_ID_FILE"
    fi
    local cid
    cid="$(cat "$CLUSTER_ID_FILE")"
    say "formatting $LOG_DIRS (cluster id $cid)"
    mapfile -t opts < <(java_opts)
    local scram=()
    if [ "$KAFKA_SECURITY" = sasl ]; then
        # The super user's SCRAM credential is in the metadata from the start: the broker
        # authenticates to itself with it, and it creates every other user and ACL.
        scram=(--add-scram "SCRAM-SHA-256=[name=$KAFKA_ADMIN_USER,password=$KAFKA_ADMIN_PASSWORD]")
    fi
    if ! java "${opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
            -t "$cid" -c "$PROPS" "${scram[@]}" >> "$KAFKA_DATA_DIR/format.log" 2>&1; then
        tail -n 30 "$KAFKA_DATA_DIR/format.log" >&2
        die "formatting the storage failed"
    fi
}

log_tail() {
    echo "---- last lines of $LOGFILE ----" >&2
    tail -n "${1:-40}" "$LOGFILE" >&2 2>/dev/null || true
    echo "----" >&2
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail 60
            rm -f "$PIDFILE"
            die "Kafka exited during start-up"
        fi
        if broker_ready; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail 60
            say "Kafka did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s; stopping it" >&2
            cmd_stop >&2 || true
            exit 1
        fi
        sleep 0.3
    done
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        say "already running from $KAFKA_DATA_DIR (pid $pid, 127.0.0.1:$KAFKA_PORT)"
        wait_ready "$pid"
        return 0
    fi
    rm -f "$PIDFILE"
    command -v java >/dev/null || die "java is needed (Java 17+)"
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_busy "$p"; then
            die "port 127.0.0.1:$p is already in use (another Kafka? set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
        fi
    done
    cmd_fetch
    write_config
    format_storage
    local started=$SECONDS
    mapfile -t opts < <(java_opts)
    : > "$LOGFILE"
    # Own session and process group (setsid): a Ctrl-C in the terminal does not reach it;
    # `stop` does. The inner shell writes its own pid, then becomes java (exec).
    setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$PIDFILE" \
        java "${opts[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" \
        >> "$LOGFILE" 2>&1 < /dev/null &
    local i
    for i in $(seq 1 50); do
        [ -s "$PIDFILE" ] && break
        sleep 0.1
    done
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [ -n "$pid" ] || die "could not start java (no pid)"
    wait_ready "$pid"
    say "Kafka $KAFKA_VERSION ($KAFKA_SECURITY) ready on 127.0.0.1:$KAFKA_PORT (pid $pid, $((SECONDS - started))s, data $KAFKA_DATA_DIR, log $LOGFILE)"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        say "not running ($KAFKA_DATA_DIR)"
        return 0
    fi
    say "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "still alive after 20s, sending KILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    say "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if broker_ready; then
            say "running: pid $pid, 127.0.0.1:$KAFKA_PORT, Kafka $KAFKA_VERSION, data $KAFKA_DATA_DIR"
        else
            say "process $pid alive but not answering on 127.0.0.1:$KAFKA_PORT (starting or stuck; see $LOGFILE)"
        fi
        return 0
    fi
    say "not running ($KAFKA_DATA_DIR)"
    return 3
}

cmd_tool() {
    [ $# -ge 1 ] || die "usage: kafka.sh tool CLASS [ARGS...]"
    cmd_fetch >&2
    local cls="$1"; shift
    exec java -Xmx512m -Dlog4j2.level=warn -cp "$LIBS/*" "$cls" "$@"
}

# SCRAM users and ACLs read from stdin, applied with Kafka's own Admin client (aiokafka has
# no API for either), all in one JVM; deploy/kafka/Access.java says what it reads.
cmd_access() {
    cmd_fetch >&2
    exec java -Xmx256m -Dlog4j2.level=warn -cp "$LIBS/*" "$HERE/kafka/Access.java" "$@"
}

case "${1:-}" in
    fetch)  cmd_fetch ;;
    access) shift; cmd_access "$@" ;;
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    tool)   shift; cmd_tool "$@" ;;
    consume)
        shift
        [ $# -ge 1 ] || die "usage: kafka.sh consume TOPIC [ARGS...]"
        topic="$1"; shift
        cmd_tool org.apache.kafka.tools.consumer.ConsoleConsumer \
            --bootstrap-server "127.0.0.1:$KAFKA_PORT" --topic "$topic" "$@" ;;
    *)
        echo "usage: $0 {fetch|start|stop|status|tool CLASS ARGS...|consume TOPIC ARGS...|access}" >&2
        exit 2 ;;
esac
