#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# 100 MB COPY TO STDOUT and COPY FROM STDIN through the sidecar, in each io
# mode, compared byte for byte (SHA-256) with the same data read directly.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
MB="${TEST_COPY_MB:-100}"
direct="host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app"

# ~MB megabytes of text rows (base64: no tab or backslash to escape)
src="$FX_DIR/copy-src.txt"
head -c $((MB * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 1000 >"$src"
want="$(sha256sum <"$src" | cut -d' ' -f1)"
bytes=$(stat -c %s "$src")
fx_psql "$direct" -c 'create table blob_src(line text); create table blob_in(line text)' >/dev/null
fx_psql "$direct" -c "\\copy blob_src from '$src'" >/dev/null
is "$(fx_psql "$direct" -c 'copy blob_src to stdout' | sha256sum | cut -d' ' -f1)" "$want" \
    "reference: direct COPY reproduces the $bytes-byte source"

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "c-$io" "$io" || BAIL_OUT "sidecar did not start"
    t0=$(date +%s%N)
    got="$(fx_psql "$(ks_dsn)" -c 'copy blob_src to stdout' | sha256sum | cut -d' ' -f1)"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    is "$got" "$want" "$io: ${MB} MB COPY TO STDOUT is byte-exact through TLS"
    note "$io: COPY TO STDOUT ${bytes} bytes in ${ms} ms"

    fx_psql "$direct" -c 'truncate blob_in' >/dev/null
    t0=$(date +%s%N)
    ok "$io: ${MB} MB COPY FROM STDIN through TLS succeeds" \
        fx_psql "$(ks_dsn)" -c 'copy blob_in from stdin' <"$src"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    note "$io: COPY FROM STDIN ${bytes} bytes in ${ms} ms"
    is "$(fx_psql "$direct" -c 'copy blob_in to stdout' | sha256sum | cut -d' ' -f1)" "$want" \
        "$io: what arrived in PostgreSQL is byte-exact"
    fx_sidecar_stop "c-$io" || true
    ks_check_log "c-$io"
done

# Bulk toward the client: a 64 KiB read from the pooler becomes four TLS records
# that go out in one send (65,624 bytes). Before, a 16 KiB read made one record,
# and before that its 16406 bytes went out as two sends (16384 + 22): twice the
# syscalls and a tiny TCP segment after every record. Seen with strace on the
# epoll engine, whose sends are syscalls.
if ! command -v strace >/dev/null; then
    skip "strace not installed" 4
else
    ks_start c-sends epoll --workers 1 || BAIL_OUT "sidecar did not start"
    pid="${FX_SIDECAR_PIDS[c-sends]}"
    strace -f -qq -e trace=sendto -o "$FX_DIR/sends.txt" -p "$pid" 2>"$FX_DIR/strace.err" &
    spid=$!
    # attached once every thread names a tracer
    traced() { ! grep -qs '^TracerPid:[[:space:]]*0$' /proc/"$pid"/task/*/status; }
    for _ in $(seq 50); do traced && break; sleep 0.1; done
    if ! traced; then
        kill "$spid" 2>/dev/null || true
        skip "strace cannot attach here: $(head -1 "$FX_DIR/strace.err")" 4
    else
        rows=8000 # 8 MB, or all of a smaller TEST_COPY_MB
        head -n "$rows" "$src" >"$FX_DIR/part.txt"
        part=$(stat -c %s "$FX_DIR/part.txt")
        got="$(fx_psql "$(ks_dsn)" -c "copy (select line from blob_src limit $rows) to stdout" | sha256sum | cut -d' ' -f1)"
        is "$got" "$(sha256sum <"$FX_DIR/part.txt" | cut -d' ' -f1)" "epoll: $part-byte COPY byte-exact while traced"
        kill -INT "$spid"; wait "$spid" 2>/dev/null || true
        # a record's first 16384 bytes in one send, its tail in the next, was the old way;
        # now a send of exactly 16384 bytes needs a read of exactly 16362 from the pooler
        split=$(grep -cE '= 16384$' "$FX_DIR/sends.txt" || true)
        total=$(awk '/= [0-9]+$/ { n += $NF } END { print n + 0 }' "$FX_DIR/sends.txt")
        sends=$(grep -cE '= [0-9]+$' "$FX_DIR/sends.txt" || true)
        ok "epoll: the trace saw the COPY go out ($total bytes in sends)" test "$total" -ge "$part"
        ok "epoll: no record split across two sends ($split sends of exactly 16384 bytes)" test "$split" -le 5
        # one record per send would average under 16406 bytes; the pooler's data arrives
        # faster than the sidecar sends it, so most reads fill the 64 KiB
        ok "epoll: several records per send ($sends sends, $((total / (sends > 0 ? sends : 1))) bytes each on average)" \
            test "$((total / (sends > 0 ? sends : 1)))" -ge 24576
    fi
    fx_sidecar_stop c-sends || true
fi
done_testing
