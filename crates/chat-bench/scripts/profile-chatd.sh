#!/usr/bin/env bash
# Profiles a running chatd while a chat-bench scenario loads it.
#
#   profile-chatd.sh CHATD_PID OUT_PREFIX SECONDS -- chat-bench ARGS...
#
# Starts the bench, waits until its setup is over (the "measuring" line it
# prints on stderr), then samples chatd with perf (software cpu-clock, with
# call graphs) and counts its syscalls and context switches, for SECONDS.
# Writes OUT_PREFIX.perf, OUT_PREFIX.syscalls.txt, OUT_PREFIX.report.txt and
# the bench's output to OUT_PREFIX.bench.txt.
set -euo pipefail
pid=$1 out=$2 seconds=$3
shift 3
[ "$1" = "--" ] && shift
"$@" >"$out.bench.txt" 2>"$out.bench.err" &
bench=$!
for _ in $(seq 1 1800); do
    grep -q "measuring" "$out.bench.err" 2>/dev/null && break
    kill -0 "$bench" 2>/dev/null || break
    sleep 0.2
done
sleep 1
perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$out.perf" -- sleep "$seconds" 2>/dev/null
perf stat -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_pread64,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,context-switches,task-clock' \
    -p "$pid" -o "$out.syscalls.txt" -- sleep "$seconds" 2>/dev/null || true
wait "$bench" || true
perf report -i "$out.perf" --stdio --no-children --sort comm,dso,sym -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -60 >"$out.report.txt"
