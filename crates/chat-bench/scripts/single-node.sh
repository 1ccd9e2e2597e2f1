#!/usr/bin/env bash
# The single-node benchmark matrix of docs/benchmarks.md: a fresh chatd on
# a fresh SQLite file per scenario, RUNS repetitions of each configuration,
# every report appended as a JSON line to OUT/results.jsonl, then a table of
# medians in OUT/summary.md.
#
#   BIN=target/release OUT=/tmp/chat-bench RUNS=3 DURATION=10 \
#       crates/chat-bench/scripts/single-node.sh [pairs] [pairs-full] [group] [login] [idle]
#
# pairs-full is pairs on a store with synchronous=full (a disk sync per
# commit batch) instead of the default synchronous=NORMAL.
#
# With no scenario names, runs them all. Build first:
#   cargo build --release -p chat-server -p chat-bench
set -euo pipefail
BIN=${BIN:-target/release}
OUT=${OUT:-/tmp/chat-bench}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
ADDR=${ADDR:-127.0.0.1:7400}
IDLE_SIZES=${IDLE_SIZES:-"1000 15000"}
# Sessions per account in the idle scenario: registering 15,000 accounts
# costs 30,000 argon2 hashes (about ten minutes here); 5 sessions per
# account cuts that to a fifth and still gives every connection a session.
IDLE_SESSIONS=${IDLE_SESSIONS:-5}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
scenarios=${*:-pairs pairs-full group login idle}
chatd_pid=

start_chatd() { # DB_FILE [STORE_QUERY]
    "$BIN/chatd" --listen "$ADDR" --http-listen "${HTTP_ADDR:-127.0.0.1:7480}" --store "sqlite://$1${2:-}" --log warn \
        --rate-limit-per-sec 0 --max-connections-per-ip 0 \
        --registrations-per-ip-per-hour 0 --registrations-per-minute 0 >>"$OUT/chatd.log" 2>&1 &
    chatd_pid=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "chatd did not start" >&2
    return 1
}

stop_chatd() {
    if [ -n "$chatd_pid" ]; then
        kill -TERM "$chatd_pid" 2>/dev/null || true
        wait "$chatd_pid" 2>/dev/null || true
        chatd_pid=
    fi
}
trap stop_chatd EXIT

bench() { # ARGS...: one run, its JSON line appended to the results
    echo "== chat-bench $*" | tee -a "$OUT/log.txt"
    if ! "$BIN/chat-bench" --no-progress --json "$@" >>"$RESULTS" 2>>"$OUT/log.txt"; then
        echo "   (run not clean or failed; see $OUT/log.txt)" | tee -a "$OUT/log.txt"
    fi
}

fresh_db() { # NAME
    rm -f "$OUT/$1.db" "$OUT/$1.db-wal" "$OUT/$1.db-shm"
    echo "$OUT/$1.db"
}

for scenario in $scenarios; do
    case $scenario in
    pairs)
        start_chatd "$(fresh_db pairs)"
        for run in $(seq 1 "$RUNS"); do
            for config in "1 1" "10 1" "100 1" "10 8" "100 8"; do
                set -- $config
                bench pairs --server "$ADDR" --pairs "$1" --window "$2" \
                    --duration "$DURATION" --baseline --server-pid "$chatd_pid"
            done
        done
        stop_chatd
        ;;
    pairs-full)
        start_chatd "$(fresh_db pairs-full)" "?synchronous=full"
        for run in $(seq 1 "$RUNS"); do
            for config in "10 1" "100 8"; do
                set -- $config
                bench --label synchronous=full pairs --server "$ADDR" --pairs "$1" \
                    --window "$2" --duration "$DURATION" --server-pid "$chatd_pid"
            done
        done
        stop_chatd
        ;;
    group)
        start_chatd "$(fresh_db group)"
        for run in $(seq 1 "$RUNS"); do
            for members in 100 500; do
                bench group --server "$ADDR" --members "$members" --senders 10 \
                    --window 4 --duration "$DURATION" --server-pid "$chatd_pid"
            done
        done
        stop_chatd
        ;;
    login)
        start_chatd "$(fresh_db login)"
        for run in $(seq 1 "$RUNS"); do
            bench login --server "$ADDR" --kind password --users 64 \
                --concurrency 8 --duration "$DURATION"
            bench login --server "$ADDR" --kind token --users 200 \
                --concurrency 32 --duration "$DURATION"
        done
        stop_chatd
        ;;
    idle)
        # Accounts and tokens are made first, on a server that is then
        # restarted: the measured process has never hashed a password, so
        # argon2's freed memory cannot hide or inflate the connections' cost.
        db=$(fresh_db idle)
        largest=0
        for size in $IDLE_SIZES; do [ "$size" -gt "$largest" ] && largest=$size; done
        start_chatd "$db"
        "$BIN/chat-bench" --no-progress idle --server "$ADDR" \
            --connections "$largest" --sessions-per-user "$IDLE_SESSIONS" \
            --save-tokens "$OUT/idle-tokens.txt" \
            2>>"$OUT/log.txt"
        stop_chatd
        for run in $(seq 1 "$RUNS"); do
            for size in $IDLE_SIZES; do
                start_chatd "$db"
                sleep 2
                bench idle --server "$ADDR" --connections "$size" \
                    --sessions-per-user "$IDLE_SESSIONS" --server-pid "$chatd_pid" \
                    --tokens "$OUT/idle-tokens.txt"
                stop_chatd
            done
        done
        ;;
    *)
        echo "unknown scenario $scenario" >&2
        exit 2
        ;;
    esac
done
"$BIN/chat-bench" summarize "$RESULTS" | tee "$OUT/summary.md"
