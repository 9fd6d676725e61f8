#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/profile.sh: perf profile of the sidecar under W1 (pgbench -S -c 16 -j 2)
# in userspace TLS, as quoted in bench/RESULTS.md ("Where W1's CPU goes").
# usage: KTLS_SIDECAR=build/ktls-sidecar [IO=uring|epoll] bench/profile.sh
# Needs perf (linux-perf) and the packages `make check` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh
: "${KTLS_SIDECAR:=$PWD/build/ktls-sidecar}" "${IO:=uring}"
export KTLS_SIDECAR
command -v perf >/dev/null || BAIL_OUT "perf not found"
ks_setup
fx_with_timeout 60 runuser -u postgres -- "$FX_PGBIN/pgbench" -q -i -s 1 -U app -h "$FX_PG_SOCKDIR" \
    -p "$FX_PG_PORT" app >/dev/null 2>&1 || BAIL_OUT "pgbench -i failed"
ks_start prof "$IO" || BAIL_OUT "sidecar did not start"
pid="$(pgrep -f "ktls-sidecar run.*127.0.0.1:$KS_PORT" | head -1)"
data="$FX_DIR/perf.data"
pgbench -n -S -c 16 -j 2 -T 12 "$(ks_dsn)" >"$FX_DIR/pgb.txt" 2>&1 &
pgb=$!
sleep 3
perf record -g -p "$pid" -o "$data" -- sleep 6 >/dev/null 2>&1 || true
wait "$pgb"
grep '^tps' "$FX_DIR/pgb.txt"
perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -10
perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep '%' | head -30
fx_sidecar_stop prof || true
