#!/usr/bin/env bash
# A local chatd cluster for a demo: N nodes (default 3) on 127.0.0.1:7101..
# (HTTP on 7181..), sharing MariaDB (database chat_cluster) and Redis, behind
# HAProxy (active /readyz checks; the recommended front end) or nginx on
# 127.0.0.1:7000 (chat) and 127.0.0.1:7080 (WebSocket, HAProxy only). Then:
# chat --server 127.0.0.1:7000
#
#   deploy/cluster-up.sh up [N] [--fresh]
#                                    build chatd (release), create the database
#                                    (--fresh: drop an existing one first), start
#                                    N nodes and the load balancer
#   deploy/cluster-up.sh status      what runs, and what Redis knows of it
#   deploy/cluster-up.sh kill I      kill -9 node I (to watch a failover)
#   deploy/cluster-up.sh start I     start node I again
#   deploy/cluster-up.sh down        drain every node (clients are told to go),
#                                    then stop the load balancer
#
# Settings (environment): CHATD_MYSQL_URL (mysql://root@127.0.0.1:3306),
# CHATD_DATABASE (chat_cluster), CHATD_REDIS_URL (redis://127.0.0.1:6379),
# CHATD_REDIS_PREFIX (chat:), CHATD_BASE_PORT (7101), CHATD_PROXY
# (127.0.0.1:7000), CHATD_WEB_PROXY (127.0.0.1:7080), CHATD_LB (haproxy when
# installed, else nginx), CHATD_RUN_DIR (/tmp/chatd-cluster: pid files, logs,
# the generated load balancer config), CHATD_BIN (a chatd binary to use
# instead of building).
# `down` keeps the database; drop it with `mysql -e 'DROP DATABASE chat_cluster'`.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
mysql_url="${CHATD_MYSQL_URL:-mysql://root@127.0.0.1:3306}"
mysql_url="${mysql_url%/}"
database="${CHATD_DATABASE:-chat_cluster}"
redis_url="${CHATD_REDIS_URL:-redis://127.0.0.1:6379}"
prefix="${CHATD_REDIS_PREFIX:-chat:}"
base_port="${CHATD_BASE_PORT:-7101}"
proxy="${CHATD_PROXY:-127.0.0.1:7000}"
web_proxy="${CHATD_WEB_PROXY:-127.0.0.1:7080}"
run="${CHATD_RUN_DIR:-${TMPDIR:-/tmp}/chatd-cluster}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

die() {
    echo "cluster-up: $*" >&2
    exit 1
}

say() {
    echo "cluster-up: $*"
}

# Whether pid file $1 names a live process whose command line contains $2
# (so a recycled pid is never signalled).
alive() {
    local pid_file=$1 what=$2 pid
    pid="$(cat "$pid_file" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what"
}

listening() {
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

chatd_binary() {
    if [ -n "${CHATD_BIN:-}" ]; then
        [ -x "$CHATD_BIN" ] || die "CHATD_BIN=$CHATD_BIN is not executable"
        echo "$CHATD_BIN"
        return
    fi
    local target="${CARGO_TARGET_DIR:-$root/target}"
    case "$target" in /*) ;; *) target="$root/$target" ;; esac
    echo "$target/release/chatd"
}

node_count() {
    local count=0
    while [ -f "$run/node-$count.port" ]; do
        count=$((count + 1))
    done
    echo "$count"
}

create_database() {
    local client
    client="$(command -v mariadb || command -v mysql || true)"
    [ -n "$client" ] || die "needs the mariadb (or mysql) client to create the database"
    [[ "$mysql_url" =~ ^(mysql|mariadb)://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?$ ]] ||
        die "CHATD_MYSQL_URL must look like mysql://USER[:PASSWORD]@HOST[:PORT] (no database)"
    local user=${BASH_REMATCH[2]} password=${BASH_REMATCH[4]}
    local host=${BASH_REMATCH[5]} port=${BASH_REMATCH[7]:-3306}
    local sql=(env MYSQL_PWD="$password" "$client" --protocol=TCP -h "$host" -P "$port" -u "$user")
    if [ "${fresh:-0}" = 1 ]; then
        "${sql[@]}" -e "DROP DATABASE IF EXISTS \`$database\`" ||
            die "cannot drop database $database at $host:$port"
        say "dropped database $database (--fresh)"
    fi
    local users
    users="$("${sql[@]}" -N -e "SELECT COUNT(*) FROM \`$database\`.users" 2>/dev/null || true)"
    if [ -n "$users" ]; then
        say "reusing database $database with $users users (--fresh starts empty)"
    fi
    "${sql[@]}" -e "CREATE DATABASE IF NOT EXISTS \`$database\` CHARACTER SET utf8mb4" ||
        die "cannot create database $database at $host:$port (is MariaDB running?)"
}

check_redis() {
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -u "$redis_url" ping >/dev/null 2>&1 ||
            die "Redis at $redis_url does not answer"
    fi
}

start_node() {
    local index=$1 bin port
    # The binary `up` started with, so `start I` later runs the same one.
    bin="$(cat "$run/chatd.bin" 2>/dev/null || chatd_binary)"
    port="$(cat "$run/node-$index.port")"
    if alive "$run/node-$index.pid" chatd; then
        say "node-$index already runs"
        return
    fi
    nohup "$bin" \
        --listen "127.0.0.1:$port" \
        --http-listen "127.0.0.1:$((port + 80))" \
        --store "$mysql_url/$database" \
        --redis "$redis_url" \
        --redis-prefix "$prefix" \
        --node-id "node-$index" \
        --proxy-protocol \
        >>"$run/node-$index.log" 2>&1 &
    echo $! >"$run/node-$index.pid"
    for _ in $(seq 1 300); do
        if listening "127.0.0.1:$port"; then
            say "node-$index listens on 127.0.0.1:$port (log: $run/node-$index.log)"
            return
        fi
        alive "$run/node-$index.pid" chatd || break
        sleep 0.1
    done
    tail -n 20 "$run/node-$index.log" >&2 || true
    die "node-$index did not start"
}

nginx_config() {
    local count=$1 nginx=$2 flags modules servers="" index
    {
        flags="$("$nginx" -V 2>&1)"
        if grep -q -- '--with-stream=dynamic' <<<"$flags"; then
            modules="$(grep -o -- '--modules-path=[^ ]*' <<<"$flags" | cut -d= -f2)"
            modules="${modules:-/usr/lib/nginx/modules}"
            [ -f "$modules/ngx_stream_module.so" ] ||
                die "nginx needs its stream module: apt-get install libnginx-mod-stream"
            echo "load_module $modules/ngx_stream_module.so;"
        elif ! grep -q -- '--with-stream' <<<"$flags"; then
            die "this nginx has no stream module"
        fi
        cat <<EOF
daemon on;
worker_processes 1;
pid $run/nginx.pid;
error_log $run/nginx-error.log notice;
events { worker_connections 4096; }
EOF
        for index in $(seq 0 $((count - 1))); do
            servers+="        server 127.0.0.1:$(cat "$run/node-$index.port") max_fails=1 fail_timeout=5s;\n"
        done
        # deploy/nginx/chat.conf with this cluster's nodes and address.
        awk -v servers="$servers" -v proxy="$proxy" '
            /# nodes begin/ { printf "%s", servers; skip = 1; next }
            /# nodes end/ { skip = 0; next }
            skip { next }
            /^[[:space:]]*listen / { sub(/listen [^;]*;/, "listen " proxy ";") }
            /^#/ { next }
            { print }
        ' "$here/nginx/chat.conf"
    } >"$run/nginx.conf"
}

haproxy_config() {
    local count=$1 servers="" http_servers="" index port
    for index in $(seq 0 $((count - 1))); do
        port="$(cat "$run/node-$index.port")"
        servers+="    server node-$index 127.0.0.1:$port check port $((port + 80))\n"
        http_servers+="    server node-$index 127.0.0.1:$((port + 80)) check\n"
    done
    # deploy/haproxy/chat.cfg with this cluster's nodes and addresses.
    awk -v servers="$servers" -v http_servers="$http_servers" \
        -v proxy="$proxy" -v web="$web_proxy" '
        /# nodes begin/ { printf "%s", servers; skip = 1; next }
        /# nodes end/ { skip = 0; next }
        /# http nodes begin/ { printf "%s", http_servers; skip = 1; next }
        /# http nodes end/ { skip = 0; next }
        skip { next }
        /^frontend chat/ { section = "chat" }
        /^frontend web/ { section = "web" }
        /^[[:space:]]*bind / { sub(/bind .*/, "bind " (section == "web" ? web : proxy)) }
        # Daemonised, it has no stdout to log to.
        /^[[:space:]]*log / { next }
        /^#/ { next }
        { print }
    ' "$here/haproxy/chat.cfg" >"$run/haproxy.cfg"
}

load_balancer() {
    case "${CHATD_LB:-}" in
    haproxy | nginx) echo "$CHATD_LB" ;;
    "") if command -v haproxy >/dev/null 2>&1; then echo haproxy; else echo nginx; fi ;;
    *) die "CHATD_LB must be haproxy or nginx" ;;
    esac
}

start_haproxy() {
    local count=$1 haproxy
    haproxy="$(command -v haproxy || true)"
    [ -n "$haproxy" ] || die "needs haproxy (apt-get install haproxy)"
    haproxy_config "$count"
    "$haproxy" -c -q -f "$run/haproxy.cfg" ||
        die "the generated $run/haproxy.cfg does not check out"
    "$haproxy" -D -f "$run/haproxy.cfg" -p "$run/haproxy.pid"
    for _ in $(seq 1 50); do
        listening "$proxy" && break
        sleep 0.1
    done
    listening "$proxy" || die "haproxy does not listen on $proxy"
    say "haproxy listens on $proxy (chat) and $web_proxy (WebSocket): chat --server $proxy"
}

up() {
    local count=${1:-3}
    [[ "$count" =~ ^[1-9][0-9]*$ ]] || die "the node count must be a positive number"
    local running
    running="$(node_count)"
    if [ "$running" -gt 0 ] && alive "$run/node-0.pid" chatd; then
        die "a cluster already runs from $run; run '$0 down' first"
    fi
    local lb nginx=""
    lb="$(load_balancer)"
    if [ "$lb" = nginx ]; then
        nginx="$(command -v nginx || true)"
        [ -n "$nginx" ] || die "needs nginx (apt-get install nginx-light libnginx-mod-stream)"
    fi
    mkdir -p "$run"
    rm -f "$run"/node-*.port "$run/chatd.bin"
    if [ -z "${CHATD_BIN:-}" ]; then
        say "building chatd (release)"
        (cd "$root" && cargo build --release --bin chatd)
    fi
    chatd_binary >"$run/chatd.bin"
    create_database
    check_redis
    local index
    for index in $(seq 0 $((count - 1))); do
        echo $((base_port + index)) >"$run/node-$index.port"
        start_node "$index"
    done
    echo "$lb" >"$run/lb"
    if [ "$lb" = haproxy ]; then
        start_haproxy "$count"
        return
    fi
    nginx_config "$count" "$nginx"
    "$nginx" -t -q -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf" ||
        die "the generated $run/nginx.conf does not check out"
    "$nginx" -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf"
    for _ in $(seq 1 50); do
        listening "$proxy" && break
        sleep 0.1
    done
    listening "$proxy" || die "nginx does not listen on $proxy (see $run/nginx-error.log)"
    say "nginx listens on $proxy: chat --server $proxy"
}

stop_pid() {
    local pid_file=$1 what=$2 signal=$3 name=$4
    if ! alive "$pid_file" "$what"; then
        rm -f "$pid_file"
        return
    fi
    local pid
    pid="$(cat "$pid_file" 2>/dev/null)" || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    # chatd drains its sessions for up to 10 s (shutdown_grace_secs).
    for _ in $(seq 1 150); do
        alive "$pid_file" "$what" || break
        sleep 0.1
    done
    if alive "$pid_file" "$what"; then
        say "$name did not stop in time; killing it"
        kill -KILL "$pid"
    fi
    rm -f "$pid_file"
    say "stopped $name"
}

down() {
    [ -d "$run" ] || {
        say "nothing runs from $run"
        return
    }
    # The nodes first, all at once: each tells its clients it is draining
    # (they would reconnect to another node, but every node is going), and
    # stops within its grace period. Then the load balancer, at once: its
    # connections are gone by now, so a graceful stop has nothing to wait for.
    local count index
    count="$(node_count)"
    for index in $(seq 0 $((count - 1))); do
        stop_pid "$run/node-$index.pid" chatd TERM "node-$index" &
    done
    wait
    stop_pid "$run/nginx.pid" nginx TERM nginx
    stop_pid "$run/haproxy.pid" haproxy TERM haproxy
}

status() {
    local count index state
    count="$(node_count)"
    if [ "$count" -eq 0 ]; then
        say "no cluster in $run"
        return
    fi
    local port sessions
    for index in $(seq 0 $((count - 1))); do
        state=stopped
        port="$(cat "$run/node-$index.port")"
        if alive "$run/node-$index.pid" chatd; then
            state="running, pid $(cat "$run/node-$index.pid")"
            # Logged-in sessions, from the node's own metrics.
            sessions="$(sessions_of "127.0.0.1:$((port + 80))")"
            [ -n "$sessions" ] && state+=", $sessions sessions"
        fi
        echo "node-$index  127.0.0.1:$port  $state"
    done
    state=stopped
    if [ "$(cat "$run/lb" 2>/dev/null)" = haproxy ]; then
        alive "$run/haproxy.pid" haproxy && state="running, pid $(cat "$run/haproxy.pid")"
        echo "haproxy $proxy $web_proxy  $state"
    else
        alive "$run/nginx.pid" nginx && state="running, pid $(cat "$run/nginx.pid")"
        echo "nginx   $proxy  $state"
    fi
    if command -v redis-cli >/dev/null 2>&1; then
        echo "Redis ($redis_url, prefix $prefix):"
        local node ttl users
        for node in $(redis-cli -u "$redis_url" --raw SMEMBERS "${prefix}nodes" 2>/dev/null | sort); do
            ttl="$(redis-cli -u "$redis_url" --raw TTL "${prefix}node:$node")"
            users="$(redis-cli -u "$redis_url" --raw SCARD "${prefix}node:$node:users")"
            if [ "$ttl" -ge 0 ] 2>/dev/null; then
                echo "  $node  alive (expires in ${ttl}s)  $users users online"
            else
                echo "  $node  gone (being swept)  $users users left to sweep"
            fi
        done
    fi
}

# The chatd_sessions_logged_in gauge of the node whose HTTP listener is $1.
sessions_of() {
    local host=${1%:*} port=${1##*:} metrics
    metrics="$(exec 3<>"/dev/tcp/$host/$port" 2>/dev/null &&
        printf 'PROXY UNKNOWN\r\nGET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3 &&
        timeout 2 cat <&3)" || return 0
    [ -n "$metrics" ] || return 0
    awk '$1 == "chatd_sessions_logged_in" { n = $2 } END { printf "%d", n }' <<<"$metrics"
}

node_index() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && [ -f "$run/node-$1.port" ] || die "no node ${1:-?} in $run"
}

case "${1:-}" in
up)
    shift
    fresh=0
    nodes=3
    for arg in "$@"; do
        case "$arg" in
        --fresh) fresh=1 ;;
        *) nodes=$arg ;;
        esac
    done
    up "$nodes"
    ;;
down) down ;;
status) status ;;
kill)
    node_index "${2:-}"
    if alive "$run/node-$2.pid" chatd; then
        kill -KILL "$(cat "$run/node-$2.pid")"
        say "killed node-$2; its users show offline within three heartbeats (6 s)"
    else
        say "node-$2 is not running"
    fi
    ;;
start)
    node_index "${2:-}"
    start_node "$2"
    ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
