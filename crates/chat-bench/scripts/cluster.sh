#!/usr/bin/env bash
# The cluster rows of docs/benchmarks.md: three chatd nodes on one MariaDB
# database and one Redis, on this machine, and `pairs` with every client on
# one node (same-node) against the two ends of every pair on different nodes
# (cross-node). RUNS repetitions; every report appended as a JSON line to
# OUT/results.jsonl, then a table of medians in OUT/summary.md. MariaDB's
# commit and sync counters around each run go to OUT/mariadb.txt (server-wide
# counters: run nothing else against this MariaDB meanwhile).
#
#   BIN=target/release OUT=/tmp/chat-bench-cluster RUNS=3 DURATION=10 \
#       crates/chat-bench/scripts/cluster.sh
#
# Needs MariaDB (root, no password) on 127.0.0.1:3306 and Redis on
# 127.0.0.1:6379. The nodes take clients directly (no PROXY protocol), so the
# bench can place each end of a pair on a node of its choice.
set -euo pipefail
BIN=${BIN:-target/release}
OUT=${OUT:-/tmp/chat-bench-cluster}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
DATABASE=${DATABASE:-chat_bench_cluster}
# The nodes listen on PORT_BASE+1 .. PORT_BASE+3.
PORT_BASE=${PORT_BASE:-7410}
PREFIX="bench$$:"
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
pids=()

stop_nodes() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    redis-cli --scan --pattern "${PREFIX}*" | xargs -r redis-cli del >/dev/null || true
}
trap stop_nodes EXIT

mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DATABASE; CREATE DATABASE $DATABASE CHARACTER SET utf8mb4"
nodes=()
for index in 1 2 3; do
    port=$((PORT_BASE + index))
    "$BIN/chatd" --listen "127.0.0.1:$port" --http-listen "127.0.0.1:$((port + 100))" --store "mysql://root@127.0.0.1:3306/$DATABASE" \
        --redis redis://127.0.0.1:6379 --redis-prefix "$PREFIX" --node-id "bench-node-$index" \
        --log warn --rate-limit-per-sec 0 --max-connections-per-ip 0 \
        --registrations-per-ip-per-hour 0 --registrations-per-minute 0 >>"$OUT/chatd-$index.log" 2>&1 &
    pids+=($!)
    nodes+=("127.0.0.1:$port")
    # One node at a time: each applies the migrations on its first start.
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

# Com_commit: transactions committed; Innodb_log_writes: writes of the redo
# log (each a synced write: what a commit waits for); Innodb_data_fsyncs:
# all of InnoDB's fsync calls.
COUNTERS="'Com_commit','Innodb_log_writes','Innodb_data_fsyncs','Innodb_row_lock_waits','Innodb_deadlocks'"
counters() {
    mysql -h 127.0.0.1 -u root -N -e "SHOW GLOBAL STATUS WHERE Variable_name IN ($COUNTERS)" |
        sort | awk '{printf "%s=%s ", $1, $2}'
}

bench() { # LABEL ARGS...
    local label=$1
    shift
    echo "== chat-bench --label $label $*" | tee -a "$OUT/log.txt"
    local before
    before=$(counters)
    if ! "$BIN/chat-bench" --no-progress --json --label "$label" "$@" >>"$RESULTS" 2>>"$OUT/log.txt"; then
        echo "   (run not clean or failed; see $OUT/log.txt)" | tee -a "$OUT/log.txt"
    fi
    echo "$label $* | before: $before| after: $(counters)" >>"$OUT/mariadb.txt"
}

all_nodes=$(IFS=,; echo "${nodes[*]}")
for run in $(seq 1 "$RUNS"); do
    bench same-node pairs --server "${nodes[0]}" --pairs 10 --window 1 --duration "$DURATION"
    bench cross-node pairs --server "$all_nodes" --pairs 10 --window 1 --duration "$DURATION"
    bench same-node pairs --server "${nodes[0]}" --pairs 10 --window 8 --duration "$DURATION"
    bench cross-node pairs --server "$all_nodes" --pairs 10 --window 8 --duration "$DURATION"
done
stop_nodes
mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DATABASE"
"$BIN/chat-bench" summarize "$RESULTS" | tee "$OUT/summary.md"
