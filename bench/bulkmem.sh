#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/bulkmem.sh: the sidecar's memory while N psql sessions each COPY 200 MB
# out through it at once: its VmRSS sampled every 50 ms, the peak above the idle
# process per session, and the RSS once they have closed. As quoted in
# bench/RESULTS.md (section "Reads of 64 KiB from the pooler") and k8s/README.md.
# usage: KTLS_SIDECAR=build/ktls-sidecar [IO=uring|epoll] [N=20] bench/bulkmem.sh
# Needs the packages `make check` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh
: "${KTLS_SIDECAR:=$PWD/build/ktls-sidecar}" "${IO:=uring}" "${N:=20}"
export KTLS_SIDECAR
[[ "$N" =~ ^[1-9][0-9]*$ ]] || BAIL_OUT "N must be a positive number"
ks_setup
ks_start bm "$IO" --log-level warn >/dev/null || BAIL_OUT "the sidecar did not start"
pid="${FX_SIDECAR_PIDS[bm]}"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
psql "$(ks_dsn)" -qAtX -c "SELECT 1" >/dev/null
r0=$(rss)
pids=()
for _ in $(seq "$N"); do
    fx_with_timeout 300 psql "$(ks_dsn)" -qAtX \
        -c "COPY (SELECT repeat('x',1000) FROM generate_series(1,200000)) TO STDOUT" >/dev/null &
    pids+=($!)
done
alive() { local p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
peak=0
while alive; do
    r=$(rss)
    ((r > peak)) && peak=$r
    sleep 0.05
done
wait "${pids[@]}" || BAIL_OUT "a COPY failed"
sleep 2.5
echo "$KTLS_SIDECAR io=$IO N=$N rss_idle_kb=$r0 peak_kb=$peak per_session_kb=$(((peak - r0) / N)) after_close_kb=$(rss)"
fx_sidecar_stop bm >/dev/null || true
