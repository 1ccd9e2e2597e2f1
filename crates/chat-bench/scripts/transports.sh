#!/usr/bin/env bash
# TCP, TLS and WebSocket side by side: `pairs` at W=1 and W=8 over plain
# TCP, TLS, WebSocket and WebSocket over TLS, interleaved run by run so they
# share the machine's noise, then idle memory per connection over each.
# One chatd without TLS (tcp, ws) and one with a throwaway certificate
# (tls, wss), each on its own fresh SQLite file.
#
#   BIN=target/release OUT=/tmp/chat-bench-transports RUNS=3 DURATION=10 \
#       crates/chat-bench/scripts/transports.sh
#
# Every report is appended as a JSON line to OUT/results.jsonl; the table of
# medians goes to OUT/summary.md. Build first:
#   cargo build --release -p chat-server -p chat-bench
set -euo pipefail
BIN=${BIN:-target/release}
OUT=${OUT:-/tmp/chat-bench-transports}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
IDLE=${IDLE:-2000}
SCENARIOS=${SCENARIOS:-pairs idle}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# A throwaway certificate for 127.0.0.1 (never committed).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

start_chatd() { # NAME CHAT_ADDR HTTP_ADDR [TLS FLAGS...]
    if [ -f "$OUT/$1.pid" ]; then
        kill "$(cat "$OUT/$1.pid")" 2>/dev/null || true
        while kill -0 "$(cat "$OUT/$1.pid")" 2>/dev/null; do sleep 0.1; done
    fi
    local name=$1 chat=$2 http=$3
    shift 3
    rm -f "$OUT/$name.db"*
    "$BIN/chatd" --listen "$chat" --http-listen "$http" --store "sqlite://$OUT/$name.db" \
        --log warn --rate-limit-per-sec 0 --max-connections-per-ip 0 \
        --registrations-per-ip-per-hour 0 --registrations-per-minute 0 "$@" \
        >>"$OUT/$name.log" 2>&1 &
    pids+=($!)
    echo $! >"$OUT/$name.pid"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/${chat%:*}/${chat#*:}") 2>/dev/null && return
        sleep 0.1
    done
    echo "chatd $name did not start" >&2
    exit 1
}

start_chatd plain 127.0.0.1:7501 127.0.0.1:7581
start_chatd secure 127.0.0.1:7502 127.0.0.1:7582 --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem"
declare -A server=(
    [tcp]=127.0.0.1:7501
    [ws]=ws://127.0.0.1:7581/ws
    [tls]=tls://127.0.0.1:7502
    [wss]=wss://127.0.0.1:7582/ws
)
declare -A pid=([tcp]=plain [ws]=plain [tls]=secure [wss]=secure)
ca_for() { # TRANSPORT: the --ca flag where it applies
    case "$1" in tls | wss) echo "--ca=$OUT/cert.pem" ;; esac
}

[[ " $SCENARIOS " == *" pairs "* ]] && for run in $(seq 1 "$RUNS"); do
    for window in 1 8; do
        for transport in tcp tls ws wss; do
            echo "run $run: pairs W=$window over $transport" >&2
            "$BIN/chat-bench" --json --no-progress --label "$transport" pairs \
                --server "${server[$transport]}" $(ca_for "$transport") \
                --pairs 10 --window "$window" --duration "$DURATION" >>"$RESULTS"
        done
    done
done

# Idle memory: each transport on a fresh server, so one transport's freed
# memory (kept by the allocator) does not hide the next one's cost.
[[ " $SCENARIOS " == *" idle "* ]] && for transport in tcp tls ws wss; do
    if [ "${pid[$transport]}" = plain ]; then
        start_chatd plain 127.0.0.1:7501 127.0.0.1:7581
    else
        start_chatd secure 127.0.0.1:7502 127.0.0.1:7582 --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem"
    fi
    echo "idle: $IDLE connections over $transport" >&2
    "$BIN/chat-bench" --json --no-progress --label "$transport" idle \
        --server "${server[$transport]}" $(ca_for "$transport") \
        --connections "$IDLE" --sessions-per-user 5 \
        --server-pid "$(cat "$OUT/${pid[$transport]}.pid")" >>"$RESULTS"
done

"$BIN/chat-bench" summarize "$RESULTS" | tee "$OUT/summary.md"
