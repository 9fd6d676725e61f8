#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS 1.3 KeyUpdate with the keys in the kernel, run INSIDE the VM by
# tests/vm/rekey.t on a kernel that can rekey kTLS (6.14 and later): the client
# sends a KeyUpdate before every query (with and without update_requested), the
# sidecar installs the next RX key (and answers with its own KeyUpdate and the
# next TX key when asked), and every answer must arrive intact. The kernel's
# TlsRxRekeyOk/TlsTxRekeyOk counters and the admin stats prove who did it.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
tls_stat() { awk -v k="$1" '$1 == k {print $2}' /proc/net/tls_stat; }
stat_json() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -r "$1"; }
KU_TOOL="$(dirname "$KTLS_SIDECAR")/tests/tools/pgkeyupdate"
ROUNDS=10

"$KTLS_SIDECAR" version | grep -q '^ktls: available' ||
    BAIL_OUT "kTLS unavailable in the VM: $("$KTLS_SIDECAR" version | tail -1)"
[[ -n "$(tls_stat TlsRxRekeyOk)" ]] ||
    BAIL_OUT "kernel $(uname -r) has no kTLS rekey (no TlsRxRekeyOk in /proc/net/tls_stat)"
[[ -x "$KU_TOOL" ]] || BAIL_OUT "build $KU_TOOL first"
ks_setup
note "kernel $(uname -r)"

# Every engine x relay once, then the other two AEADs (AES-256 uses SHA-384 for
# its secrets) on the first engine.
MODES="${TEST_IO_MODES:-uring epoll}"
first="$(awk '{print $1}' <<<"$MODES")"
runs=()
for io in $MODES; do
    for relay in splice copy; do runs+=("$io $relay TLS_AES_128_GCM_SHA256"); done
done
runs+=("$first splice TLS_AES_256_GCM_SHA384" "$first splice TLS_CHACHA20_POLY1305_SHA256")

for run in "${runs[@]}"; do
    read -r io relay suite <<<"$run"
    name="rk-$io-$relay-${suite%%_SHA*}"
    ks_start "$name" "$io" --ktls on --relay "$relay" --ciphersuites "$suite" || BAIL_OUT "sidecar did not start"
    rx0="$(tls_stat TlsRxRekeyOk)" tx0="$(tls_stat TlsTxRekeyOk)"
    for ku in k K; do
        rc=0; out="$(fx_with_timeout 120 "$KU_TOOL" 127.0.0.1 "$KS_PORT" app app "$ROUNDS" "$ku" 2>&1)" || rc=$?
        ok_rc "$rc" "$io/$relay/$suite: $ROUNDS queries, each after a client KeyUpdate ($ku), answered in full" ||
            diag "$out"$'\n'"$(tail -5 "$(fx_sidecar_log "$name")")"
    done
    is "$(stat_json '[.ktls_tx, .ktls_rx, .user_tls, .ktls_rekey_rx, .ktls_rekey_tx] | join(" ")')" \
        "2 2 0 $((2 * ROUNDS)) $ROUNDS" \
        "$io/$relay/$suite: kTLS both ways; RX rekeyed for every KeyUpdate, TX for every requested one"
    is "$(($(tls_stat TlsRxRekeyOk) - rx0)) $(($(tls_stat TlsTxRekeyOk) - tx0))" "$((2 * ROUNDS)) $ROUNDS" \
        "$io/$relay/$suite: the kernel counted the same rekeys (TlsRxRekeyOk, TlsTxRekeyOk)"
    is "$(stat_json .closed.keyupdate_unsupported)" 0 "$io/$relay/$suite: no connection closed over a KeyUpdate"
    fx_sidecar_stop "$name" || true
done

# openssl s_client's interactive KeyUpdate: the session stays open this time.
ks_start ku-sclient "$first" --ktls on || BAIL_OUT "sidecar did not start"
out="$( (sleep 4; echo K; sleep 4) | fx_with_timeout 30 openssl s_client -starttls postgres \
    -connect "127.0.0.1:$KS_PORT" -tls1_3 2>&1)" || true
like "$out" 'KEYUPDATE' "s_client sent a KeyUpdate (update_requested)"
is "$(stat_json '[.ktls_rekey_rx, .ktls_rekey_tx, .closed.keyupdate_unsupported] | join(" ")')" "1 1 0" \
    "s_client's KeyUpdate was followed in the kernel, with no close"
fx_sidecar_stop ku-sclient || true
done_testing
