#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/copyin.sh: bulk load through the sidecar (psql \copy FROM a file, a TLS
# record per 8 KiB libpq flush), for an A/B of two or more builds, interleaved
# round by round: each build's CPU (utime + stime of the sidecar, in clock ticks)
# and wall time. With STRACE=1 it counts the sidecar's syscalls instead
# (strace -c -f, which slows it down: no times then). As quoted in bench/RESULTS.md
# (section "The client side: bulk loads").
# usage: BUILDS="build/ktls-sidecar /tmp/other-build" [IO=uring|epoll] [ROWS=200000]
#        [ROUNDS=3] [STRACE=1] bench/copyin.sh
# Needs the packages `make check` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh
: "${BUILDS:=$PWD/build/ktls-sidecar}" "${IO:=uring}" "${ROWS:=200000}" "${ROUNDS:=3}" "${STRACE:=}"
[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || BAIL_OUT "ROWS must be a positive number"
KTLS_SIDECAR="${BUILDS%% *}"
export KTLS_SIDECAR
ks_setup
data="$FX_DIR/copyin.dat"
# ROWS lines of 1000 bytes + newline
python3 -c "import sys; sys.stdout.write(('x' * 1000 + '\n') * $ROWS)" >"$data"
chmod 644 "$data"
fx_with_timeout 60 runuser -u postgres -- psql -h "$FX_PG_SOCKDIR" -p "$FX_PG_PORT" -d app -qX \
    -c "CREATE UNLOGGED TABLE copyin(t text); ALTER TABLE copyin OWNER TO app" >/dev/null ||
    BAIL_OUT "could not create the table"
echo "# $ROWS rows ($(( ROWS * 1001 / 1000000 )) MB), --io $IO, $ROUNDS round(s)"
k=0
for r in $(seq "$ROUNDS"); do
    for b in $BUILDS; do
        k=$((k + 1))
        KTLS_SIDECAR="$b"
        ks_start "c$k" "$IO" --log-level warn >/dev/null || BAIL_OUT "$b did not start"
        pid="${FX_SIDECAR_PIDS[c$k]}"
        psql "$(ks_dsn)" -qAtX -c "TRUNCATE copyin" >/dev/null
        sp=
        if [[ -n "$STRACE" ]]; then
            strace -f -c -p "$pid" -o "$FX_DIR/strace.$k" 2>/dev/null &
            sp=$!
            sleep 0.5
        fi
        t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        s=$(date +%s%N)
        fx_with_timeout 300 psql "$(ks_dsn)" -qAtX -c "\\copy copyin from '$data'" >/dev/null ||
            BAIL_OUT "the COPY through $b failed"
        e=$(date +%s%N)
        t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        n=$(psql "$(ks_dsn)" -qAtX -c "SELECT count(*) FROM copyin")
        [[ "$n" == "$ROWS" ]] || BAIL_OUT "$b: $n rows arrived, not $ROWS"
        if [[ -n "$sp" ]]; then
            kill -INT "$sp"
            wait "$sp" || true
            echo "round $r $b syscalls:"
            grep -E '^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+' "$FX_DIR/strace.$k" |
                awk '{printf "  %-16s %s\n", $NF, $4}' | head -8
        else
            echo "round $r $b cpu_ticks $((t1 - t0)) wall_ms $(((e - s) / 1000000))"
        fi
        fx_sidecar_stop "c$k" >/dev/null || true
    done
done
