#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/profile.sh: perf profile of the sidecar under W1 (pgbench -S -c 16 -j 2),
# W2 (the same with -C -c 4: a TLS handshake per transaction), W3 (the bulk COPY,
# repeated) or W5 (W1 with 1000 clients, recorded once they are connected) in userspace
# TLS, as quoted in bench/RESULTS.md
# ("Where W1's CPU goes", "Where W3's CPU goes").
# usage: KTLS_SIDECAR=build/ktls-sidecar [IO=uring|epoll] [WORKLOAD=W1|W2|W3|W5] bench/profile.sh
# Needs perf (linux-perf) and the packages `make check` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh
: "${KTLS_SIDECAR:=$PWD/build/ktls-sidecar}" "${IO:=uring}" "${WORKLOAD:=W1}"
export KTLS_SIDECAR
command -v perf >/dev/null || BAIL_OUT "perf not found"
[[ "$WORKLOAD" == W5 ]] && ulimit -n "$(ulimit -Hn)" # 1000 clients: 2000 sockets in the sidecar
ks_setup
fx_with_timeout 60 runuser -u postgres -- "$FX_PGBIN/pgbench" -q -i -s 1 -U app -h "$FX_PG_SOCKDIR" \
    -p "$FX_PG_PORT" app >/dev/null 2>&1 || BAIL_OUT "pgbench -i failed"
ks_start prof "$IO" || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[prof]}"
data="$FX_DIR/perf.data"
if [[ "$WORKLOAD" == W3 ]]; then
    # the bulk COPY of W3, repeated for the whole recording
    (for _ in 1 2 3 4 5 6 7 8; do
        psql "$(ks_dsn)" -qAt -c "COPY (SELECT repeat('x',1000) FROM generate_series(1,500000)) TO STDOUT" >/dev/null
    done) &
elif [[ "$WORKLOAD" == W5 ]]; then
    pgbench -n -S -c 1000 -j 2 -T 30 "$(ks_dsn)" >"$FX_DIR/pgb.txt" 2>&1 &
elif [[ "$WORKLOAD" == W2 ]]; then
    pgbench -n -S -C -c 4 -j 2 -T 12 "$(ks_dsn)" >"$FX_DIR/pgb.txt" 2>&1 &
else
    pgbench -n -S -c 16 -j 2 -T 12 "$(ks_dsn)" >"$FX_DIR/pgb.txt" 2>&1 &
fi
load=$!
# W5: give the 1000 handshakes time to finish first
if [[ "$WORKLOAD" == W5 ]]; then sleep 15; else sleep 3; fi
perf record -g -p "$pid" -o "$data" -- sleep 6 >/dev/null 2>&1 || true
wait "$load"
[[ "$WORKLOAD" == W3 ]] || grep '^tps' "$FX_DIR/pgb.txt"
perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null | grep "%" | head -10 || true
perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep "%" | head -30 || true
echo "# inside OpenSSL"
perf report -i "$data" --no-children --dsos libcrypto.so.3,libssl.so.3 --sort dso,sym --stdio -g none 2>/dev/null |
    grep "%" | head -15 || true
fx_sidecar_stop prof || true
