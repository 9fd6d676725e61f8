#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The fallbacks a real deployment meets: io_uring blocked by seccomp (EPERM, as
# containerd/Docker's default profile does, or ENOSYS) makes --io=auto run the
# epoll engine, logged once; --io=uring then refuses to start. A kernel
# without the tls module makes --ktls=auto use userspace TLS, and --ktls=on
# refuse to start.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
NOURING="$(dirname "$KTLS_SIDECAR")/tests/tools/noiouring"
[[ -x "$NOURING" ]] || NOURING="$FX_REPO/build/tests/tools/noiouring"

for err in EPERM ENOSYS; do
    real="$KTLS_SIDECAR"
    wrap="$FX_DIR/sidecar-$err"
    printf '#!/bin/sh\nexec %q %s %q "$@"\n' "$NOURING" "$err" "$real" >"$wrap"
    chmod +x "$wrap"
    KTLS_SIDECAR="$wrap" ks_start "auto-$err" auto || BAIL_OUT "sidecar did not start under seccomp"
    KTLS_SIDECAR="$real"
    log="$(fx_sidecar_log "auto-$err")"
    like "$(cat "$log")" "msg=\"io_uring unavailable, using the epoll engine\"" "$err: fallback to epoll is logged"
    is "$(grep -c 'io_uring unavailable' "$log")" 1 "$err: ... exactly once"
    is "$(fx_psql "$(ks_dsn)" -c 'select 11')" 11 "$err: sessions work on the epoll engine"
    info="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json)"
    is "$(jq -r .io <<<"$info")" epoll "$err: show info reports the epoll engine"
    like "$(jq -r .io_why <<<"$info")" 'io_uring_setup' "$err: ... and why"
    fx_sidecar_stop "auto-$err" || true
    port="$(fx_free_port)"
    rc=0; out="$(fx_with_timeout 10 "$wrap" run --listen "127.0.0.1:$port" --io uring --admin-socket "" \
        --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" 2>&1)" || rc=$?
    isnt "$rc" 0 "$err: --io=uring refuses to start without io_uring"
    like "$out" 'io_uring required' "$err: ... saying why"
done

if "$KTLS_SIDECAR" version | grep -q '^ktls: available'; then
    skip "this kernel has kTLS: the no-tls-module fallback is not observable here" 5
else
    ks_start ktlsauto "$(ks_io_modes | awk '{print $1}')" --ktls auto || BAIL_OUT "sidecar did not start"
    log="$(fx_sidecar_log ktlsauto)"
    like "$(cat "$log")" 'msg="kTLS unavailable, connections use userspace TLS" reason="TCP_ULP tls: No such file' \
        "no tls module: --ktls=auto logs the ENOENT fallback"
    is "$(fx_psql "$(ks_dsn)" -c 'select 12')" 12 "sessions work in userspace TLS"
    is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -r '[.user_tls, .ktls_tx] | join(" ")')" "1 0" \
        "show stats counts the connection as userspace TLS"
    is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -c .ktls_fallback)" \
        '{"buffered":0,"suite":0,"export":0,"ulp":0,"tx":0,"rx":0,"pipes":0}' \
        "... not per step: with no tls module at startup, no connection tries kTLS"
    fx_sidecar_stop ktlsauto || true
    port="$(fx_free_port)"
    rc=0; out="$(fx_with_timeout 10 "$KTLS_SIDECAR" run --listen "127.0.0.1:$port" --ktls on --admin-socket "" \
        --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" 2>&1)" || rc=$?
    like "$rc:$out" '^[1-9][0-9]*:.*kTLS required' "--ktls=on refuses to start without the tls module"
fi
done_testing
