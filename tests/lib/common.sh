# SPDX-License-Identifier: MIT
# tests/lib/common.sh: shared setup for the integration tests: PostgreSQL +
# PgBouncer + certificates, a sidecar per (name, io mode), and the io modes
# this machine can run. Source it from a test after `set -euo pipefail`.
# shellcheck source=tests/lib/fixture.sh
source "$(dirname "${BASH_SOURCE[0]}")/fixture.sh"

PGWIRE="$(dirname "${BASH_SOURCE[0]}")/pgwire.py"

# Bring up the whole backend side once per test file.
ks_setup() {
    fx_init || BAIL_OUT "fx_init failed"
    fx_certs >/dev/null || BAIL_OUT "fx_certs failed"
    fx_pg_start || BAIL_OUT "PostgreSQL did not start"
    fx_pgbouncer_start || BAIL_OUT "PgBouncer did not start"
}

# The io engines to test: TEST_IO_MODES, else both when io_uring works here.
ks_io_modes() {
    if [[ -n "${TEST_IO_MODES:-}" ]]; then echo "$TEST_IO_MODES"; return; fi
    if "$KTLS_SIDECAR" version 2>/dev/null | grep -q '^io_uring: available'; then
        echo "uring epoll"
    else
        echo "epoll"
    fi
}

# Start sidecar NAME on a free port with io mode IO and extra ARGS; sets KS_PORT and KS_ADMIN.
ks_start() {
    local name="$1" io="$2"
    shift 2
    KS_PORT="$(fx_free_port)"
    KS_ADMIN="$FX_DIR/$name.sock"
    fx_sidecar_start "$name" --listen "127.0.0.1:$KS_PORT" --backend "127.0.0.1:${FX_PGB_PORT:-6432}" \
        --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" --io "$io" --workers 2 \
        --admin-socket "$KS_ADMIN" "$@"
}

# Run the sidecar in the foreground on a free port with the test certificate and extra
# ARGS, for a start that must fail: prints its output, returns its status (5 s at most).
ks_run_fg() {
    fx_with_timeout 5 "$KTLS_SIDECAR" run --listen "127.0.0.1:$(fx_free_port)" --cert "$FX_CERTS/server.crt" \
        --key "$FX_CERTS/server.key" "$@" 2>&1
}

# libpq connection string to the sidecar on PORT (default KS_PORT), plus extra keywords.
ks_dsn() { echo "host=127.0.0.1 port=${KS_PORT} user=app dbname=app sslmode=require $*"; }

# Fail the test file with the sidecar's log if it reported a sanitizer error.
ks_check_log() {
    local log; log="$(fx_sidecar_log "$1")"
    if grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$log"; then
        fail "$1: no sanitizer report" "$(cat "$log")"
    else
        pass "$1: no sanitizer report in its log"
    fi
}

# Wait (up to SECS, default 15) until FILE exists and is not empty: a helper's "ready".
ks_wait_file() {
    _fx_wait_until "${2:-15}" test -s "$1" && return 0
    diag "ks_wait_file: $1 still empty after ${2:-15} s"
    return 1
}

# The "[N ms]" a pgwire command measured itself, from its output line; 999999 if absent.
ks_ms() { local m; m="$(sed -n 's/.*\[\([0-9]*\) ms\].*/\1/p' <<<"$1" | tail -n 1)"; echo "${m:-999999}"; }

# Wait (up to 15 s) until sidecar KS_ADMIN has relayed N sessions (logged in, past the
# startup): a query sent before a signal is then really in flight.
_ks_relaying() {
    "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show conns json 2>/dev/null |
        jq '[(.conns // .)[] | select(.state == "relay")] | length' 2>/dev/null || true
}
_ks_relaying_is() { [[ "$(_ks_relaying)" == "$1" ]]; }
ks_wait_relaying() {
    _fx_wait_until 15 _ks_relaying_is "$1" && return 0
    diag "ks_wait_relaying: $(_ks_relaying) sessions in relay, not $1, after 15 s"
    return 1
}
