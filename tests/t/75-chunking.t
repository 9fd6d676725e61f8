#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Byte-exactness under random chunking: random payloads written in random TLS
# record sizes (1 B to 16 KB) through the sidecar to an echo backend that reads
# and writes in random sizes too; SHA-256 of both directions compared, in each
# io mode (userspace TLS here; the VM suite runs the kTLS relays). Then a client
# that stops reading now and then, so that the sidecar's output backs up, and
# clients that end their stream (FIN, or close_notify) right after a burst.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
fx_init || BAIL_OUT "fx_init"
fx_certs >/dev/null || BAIL_OUT "fx_certs"
MB="${TEST_CHUNK_MB:-16}"
eport="$(fx_free_port)"
python3 "$PGWIRE" echo-server "$eport" >"$FX_DIR/echo.log" 2>&1 &
fx_register_pid $!
for _ in $(seq 50); do grep -q listening "$FX_DIR/echo.log" 2>/dev/null && break; sleep 0.1; done

sport="$(fx_free_port)"
python3 "$PGWIRE" echo-server "$sport" 1 >"$FX_DIR/slow-echo.log" 2>&1 &
fx_register_pid $!
for _ in $(seq 50); do grep -q listening "$FX_DIR/slow-echo.log" 2>/dev/null && break; sleep 0.1; done

bursts=0
for io in $(ks_io_modes); do
    ks_start "e-$io" "$io" --backend "127.0.0.1:$eport" || BAIL_OUT "sidecar did not start"
    for seed in 1 2; do
        read -r sent got left <<<"$(fx_with_timeout 300 python3 "$PGWIRE" chunked "$KS_PORT" "$MB" "$seed")"
        is "$left" 0 "$io seed $seed: every byte came back ($MB MB)"
        is "$got" "$sent" "$io seed $seed: SHA-256 of both directions match"
    done
    # a client that reads slowly: the sidecar's sends stall, its output queues behind them
    read -r sent got left <<<"$(fx_with_timeout 300 python3 "$PGWIRE" chunked "$KS_PORT" 8 3 1)"
    is "$left" 0 "$io slow reader: every byte came back (8 MB)"
    is "$got" "$sent" "$io slow reader: SHA-256 of both directions match"
    fx_sidecar_stop "e-$io" || true
    ks_check_log "e-$io"

    # the client ends its stream right after a burst, toward a pooler that stops
    # reading for a second: what is still queued in the sidecar reaches it before
    # the half-close
    ks_start "s-$io" "$io" --backend "127.0.0.1:$sport" || BAIL_OUT "sidecar did not start"
    for how in fin notify; do
        read -r n state <<<"$(fx_with_timeout 60 python3 "$PGWIRE" send-close "$KS_PORT" 4096 "$how")"
        is "$state" "$([[ $how == fin ]] && echo intact || echo closed)" "$io $how after a 4 MB burst: the echo came back whole, then EOF"
        bursts=$((bursts + 1)) # every burst's connection logs the same count
        is "$(grep -c "^eof $n\$" "$FX_DIR/slow-echo.log")" "$bursts" "$io $how after a 4 MB burst: the pooler got all $n bytes before EOF"
    done
    fx_sidecar_stop "s-$io" || true
    ks_check_log "s-$io"
done
done_testing
