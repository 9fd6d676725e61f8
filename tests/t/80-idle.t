#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# --idle-timeout, in each io mode (userspace TLS here; with kTLS and --relay splice
# the sidecar does not see the plaintext, and a silent query counts as idle there,
# as README says). A session is idle when the pooler owes no answer: a query that
# runs longer than the timeout without a byte back (pg_sleep), or after a NOTICE, is
# not cut; a session that waits at ReadyForQuery is, and so is one that sent half a
# message and stopped.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup

idle_closed() {
    "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json 2>/dev/null | jq -r '.closed.idle_timeout'
}

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "i-$io" "$io" --idle-timeout 2s || BAIL_OUT "sidecar did not start"

    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" -c 'select pg_sleep(4)' -c 'select 7' 2>&1)" || true
    is "$out" "$(printf '\n7')" "$io: a query silent for twice the idle timeout is not cut"
    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" \
        -c "do \$\$ begin raise notice 'step one'; perform pg_sleep(4); end \$\$" -c 'select 8' 2>&1)" || true
    like "$out" 'NOTICE:  step one' "$io: the NOTICE came through"
    like "$out" '8$' "$io: nor is one that sends a NOTICE, then stays silent past the timeout"
    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" -c 'begin' -c 'select pg_sleep(3)' -c 'select 9' -c 'commit' 2>&1)" || true
    like "$out" '9' "$io: queries one after another in a transaction, one past the timeout"
    is "$(idle_closed)" 0 "$io: no session was closed as idle so far"

    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" idle 10)"
    like "$out" '^closed' "$io: a session that waits at ReadyForQuery is closed: $out"
    ms="$(ks_ms "$out")"
    ok "$io: ... after the idle timeout (${ms} ms for 2 s)" test "$ms" -ge 1500 -a "$ms" -lt 9000
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" half 10)"
    like "$out" '^closed' "$io: a session that sent half a message and stopped is closed too: $out"
    is "$(idle_closed)" 2 "$io: both counted as idle_timeout"
    like "$(cat "$(fx_sidecar_log "i-$io")")" 'msg="idle timeout"' "$io: the idle close is logged"
    fx_sidecar_stop "i-$io" || true
done

done_testing
