#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/callgrind.sh: the sidecar's user-space instructions per transaction under
# W1's kind of load (pgbench -S, sslmode=require, userspace TLS), counted by
# valgrind's callgrind. Instruction counts do not depend on what else runs on the
# machine, so an A/B of two builds is readable here where timings are not. The
# kernel's share (about half of W1's CPU, see bench/RESULTS.md) is not counted.
#
# Per transaction = (Ir at LONG - Ir at SHORT transactions per client) / the extra
# transactions, so start-up, handshakes and exit cancel out.
# usage: [KTLS_SIDECAR=build/ktls-sidecar] [SIDECAR_ALT=other/build] [IO=epoll]
#        [CLIENTS=4] [SHORT=200] [LONG=1200] [ROUNDS=2] [ANNOTATE=1] [CONNECT=1] bench/callgrind.sh
# CONNECT=1: W2's kind of load instead (pgbench -C: a new TLS connection per
# transaction), so the figure is instructions per connection, handshake included.
# IO=epoll: io_uring does not run under valgrind 3.19; the TLS work is the same.
# Needs valgrind; the packages `make check` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh
: "${KTLS_SIDECAR:=$PWD/build/ktls-sidecar}" "${SIDECAR_ALT:=}" "${IO:=epoll}"
: "${CLIENTS:=4}" "${SHORT:=200}" "${LONG:=1200}" "${ROUNDS:=2}" "${CONNECT:=0}"
export KTLS_SIDECAR
command -v valgrind >/dev/null || BAIL_OUT "valgrind not found"
((LONG > SHORT)) || BAIL_OUT "LONG must be above SHORT"
ks_setup
fx_with_timeout 60 runuser -u postgres -- "$FX_PGBIN/pgbench" -q -i -s 1 -U app -h "$FX_PG_SOCKDIR" \
    -p "$FX_PG_PORT" app >/dev/null 2>&1 || BAIL_OUT "pgbench -i failed"

# Ir of one sidecar life under CLIENTS x N transactions of binary BIN.
instructions() {
    local bin="$1" n="$2" wrap="$FX_DIR/cg-wrap" out="$FX_DIR/cg.out"
    rm -f "$out"
    printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s %s "$@" 2>>%s\n' \
        "$out" "$bin" "$FX_DIR/cg.log" >"$wrap"
    chmod +x "$wrap"
    KTLS_SIDECAR="$wrap" ks_start cg "$IO" --workers 1 --handshake-timeout 60s >/dev/null ||
        BAIL_OUT "sidecar did not start under valgrind"
    local per_conn=()
    [[ "$CONNECT" == 1 ]] && per_conn=(-C)
    fx_with_timeout 300 pgbench -n -S "${per_conn[@]}" -c "$CLIENTS" -j 1 -t "$n" "$(ks_dsn)" >"$FX_DIR/pgb.txt" 2>&1 ||
        { cat "$FX_DIR/pgb.txt" >&2; BAIL_OUT "pgbench failed"; }
    fx_sidecar_stop cg >/dev/null 2>&1 || true
    for _ in $(seq 50); do [[ -s "$out" ]] && grep -q '^totals:' "$out" && break; sleep 0.2; done
    local ir
    ir="$(awk '/^totals:/ {print $2}' "$out")"
    [[ -n "$ir" ]] || { tail -n 20 "$FX_DIR/cg.log" "$(fx_sidecar_log cg)" >&2; BAIL_OUT "no callgrind totals (io_uring does not run under valgrind 3.19: use IO=epoll)"; }
    echo "$ir"
}

bins=("$KTLS_SIDECAR")
[[ -n "$SIDECAR_ALT" ]] && bins+=("$SIDECAR_ALT")
unit=transaction
[[ "$CONNECT" == 1 ]] && unit=connection
echo "# io=$IO clients=$CLIENTS ${unit}s per client: $SHORT and $LONG"
for r in $(seq "$ROUNDS"); do
    for b in "${bins[@]}"; do
        short="$(instructions "$b" "$SHORT")" long="$(instructions "$b" "$LONG")"
        awk -v r="$r" -v b="$b" -v s="$short" -v l="$long" -v t=$((CLIENTS * (LONG - SHORT))) -v u="$unit" \
            'BEGIN {printf "round %d  %-40s  %.0f instructions per %s\n", r, b, (l - s) / t, u}'
    done
done
# ANNOTATE=1: where the last LONG run's instructions went, by function (self)
if [[ "${ANNOTATE:-0}" == 1 ]]; then
    callgrind_annotate --inclusive=no "$FX_DIR/cg.out" 2>/dev/null | sed -n '/^ *Ir/,$p' | head -n 40
fi
