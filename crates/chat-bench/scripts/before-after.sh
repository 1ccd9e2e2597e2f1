#!/usr/bin/env bash
# Two chatd binaries on the same load, interleaved run by run so they share
# the machine's noise: `pairs` (PAIRS pairs, 10 by default) at W=1 and W=8 (WINDOWS), each run on a
# fresh SQLite file and a freshly started server, alternating (new, old,
# new, old, ...). Each report carries the server's CPU time per delivered
# message (chat-bench --server-pid: utime + stime of /proc/PID/stat over
# the measured run, setup excluded).
#
#   OLD=/tmp/bins/chatd-old NEW=/tmp/bins/chatd-new BENCH=target/release/chat-bench \
#       OUT=/tmp/chat-bench-before-after RUNS=3 DURATION=10 \
#       crates/chat-bench/scripts/before-after.sh
#
# Every report is appended as a JSON line to OUT/results.jsonl (labelled
# `before` or `after`), the CPU figures to OUT/cpu.tsv; the table of medians
# goes to OUT/summary.md.
set -euo pipefail
OLD=${OLD:?the chatd binary before the change}
NEW=${NEW:?the chatd binary after the change}
BENCH=${BENCH:-target/release/chat-bench}
OUT=${OUT:-/tmp/chat-bench-before-after}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WINDOWS=${WINDOWS:-1 8}
PAIRS=${PAIRS:-10}
PORT=${PORT:-7521}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
CPU=$OUT/cpu.tsv
: >"$RESULTS"
printf 'label\twindow\trun\tmessages\tcpu_s\tcpu_us_per_msg\n' >"$CPU"
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

run_one() { # LABEL BINARY WINDOW RUN
    local label=$1 binary=$2 window=$3 run=$4
    rm -f "$OUT/chat.db"*
    # The registration limits by environment: a binary from before them
    # ignores the variables (it would refuse the flags).
    CHATD_REGISTRATIONS_PER_IP_PER_HOUR=0 CHATD_REGISTRATIONS_PER_MINUTE=0 \
        "$binary" --listen "127.0.0.1:$PORT" --http-listen "" --store "sqlite://$OUT/chat.db" \
        --log warn --rate-limit-per-sec 0 --max-connections-per-ip 0 >>"$OUT/$label.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    local report
    report=$("$BENCH" --json --no-progress --label "$label" pairs --server "127.0.0.1:$PORT" \
        --pairs "$PAIRS" --window "$window" --duration "$DURATION" --server-pid "$server")
    echo "$report" >>"$RESULTS"
    echo "$report" | jq -r --arg l "$label" --arg w "$window" --arg r "$run" \
        '[$l, $w, $r, .delivered, .server_cpu_secs, (.server_cpu_us_per_delivery * 100 | round / 100)] | @tsv' >>"$CPU"
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
}

for run in $(seq 1 "$RUNS"); do
    for window in $WINDOWS; do
        echo "run $run: W=$window after, then before" >&2
        run_one after "$NEW" "$window" "$run"
        run_one before "$OLD" "$window" "$run"
    done
done

"$BENCH" summarize "$RESULTS" | tee "$OUT/summary.md"
echo
echo "server CPU per message (µs), median of the runs:" | tee -a "$OUT/summary.md"
for label in after before; do
    for window in $WINDOWS; do
        median=$(awk -F'\t' -v l="$label" -v w="$window" '$1 == l && $2 == w { print $6 }' "$CPU" |
            sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
        echo "  $label W=$window: $median" | tee -a "$OUT/summary.md"
    done
done
