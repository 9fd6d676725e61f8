#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The admin socket and the metrics listener against real traffic: every command
# in text and JSON, counters checked against known traffic, show conns matched
# to PgBouncer's SHOW CLIENTS by port, socket permissions, /metrics parsed,
# /readyz following PgBouncer, JSON logs.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
ctl() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" "$@"; }
valid_json() { python3 -c 'import json,sys; json.load(sys.stdin)'; }
direct="host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app"
io="$(ks_io_modes | awk '{print $1}')"
mport="$(fx_free_port)"
ks_start adm "$io" --metrics-listen "127.0.0.1:$mport" --log-format json || BAIL_OUT "sidecar did not start"
log="$(fx_sidecar_log adm)"

for cmd in "show info" "show stats" "show workers" "show conns" "help"; do
    rc=0; out="$(ctl $cmd)" || rc=$?
    ok_rc "$rc" "'$cmd' answers"
    ok "'$cmd json' is valid JSON" valid_json <<<"$(ctl $cmd json)"
done
like "$(ctl show info)" 'io +\| '"$io" "show info names the io engine"
like "$(ctl show info json | jq -r .cert)" 'CN ?= ?localhost' "show info names the certificate subject"
like "$(ctl show info json | jq -r .cert_sans)" 'DNS:localhost' "... its SANs"
rc=0; out="$(ctl bogus 2>&1)" || rc=$?
isnt "$rc" 0 "an unknown command exits non-zero"
like "$out" 'unknown command' "... and says so"
rc=0; "$KTLS_SIDECAR" ctl --admin-socket "$FX_DIR/nope.sock" show info >/dev/null 2>&1 || rc=$?
isnt "$rc" 0 "ctl against a missing socket exits non-zero"
like "$("$KTLS_SIDECAR" ctl show info --admin-socket "$KS_ADMIN")" 'version' "--admin-socket may follow the command"
printf 'admin-socket = %s\n' "$KS_ADMIN" >"$FX_DIR/ctl.conf"
like "$("$KTLS_SIDECAR" ctl --config "$FX_DIR/ctl.conf" show info)" 'version' "ctl takes the socket from --config's file"
like "$(KTLS_SIDECAR_CONFIG="$FX_DIR/ctl.conf" "$KTLS_SIDECAR" ctl show info)" 'version' \
    "... or from \$KTLS_SIDECAR_CONFIG's"

# known traffic: one psql session, then a 100 MB COPY in each direction
fx_psql "$direct" -c "create table t(line text); insert into t select repeat('x', 999) from generate_series(1, 100000)" >/dev/null
is "$(fx_psql "$(ks_dsn)" -c 'select 1')" 1 "a psql session"
bytes_out="$(fx_psql "$(ks_dsn)" -c 'copy t to stdout' | wc -c)"
fx_psql "$direct" -c 'copy t to stdout' >"$FX_DIR/t.copy"
fx_psql "$(ks_dsn)" -c 'create temp table u(line text)' -c 'copy u from stdin' <"$FX_DIR/t.copy" >/dev/null
# the last close is asynchronous to psql's exit: wait for it (bounded)
for _ in $(seq 50); do [[ "$(ctl show stats json | jq .active)" == 0 ]] && break; sleep 0.1; done
s="$(ctl show stats json)"
is "$(jq .handshakes_ok <<<"$s")" 3 "handshake count is exact (3 sessions)"
is "$(jq .accepted <<<"$s")" 3 "accepted count is exact"
is "$(jq .closed.eof <<<"$s")" 3 "all three closed with reason eof"
b2c="$(jq .bytes_b2c <<<"$s")" c2b="$(jq .bytes_c2b <<<"$s")"
ok "bytes backend->client ($b2c) covers the 100 MB COPY out ($bytes_out) within protocol overhead" \
    python3 -c "import sys; sys.exit(not $bytes_out <= $b2c <= $bytes_out * 1.02 + 100000)"
ok "bytes client->backend ($c2b) covers the 100 MB COPY in within protocol overhead" \
    python3 -c "import sys; sys.exit(not $bytes_out <= $c2b <= $bytes_out * 1.02 + 100000)"
like "$(ctl show stats)" 'handshake.*p50' "show stats reports handshake latency percentiles"

# show conns <-> PgBouncer SHOW CLIENTS by the sidecar's backend port
fx_psql "$(ks_dsn application_name=matchme)" -c 'select pg_sleep(3)' >/dev/null &
sleeper=$!
fx_register_pid "$sleeper"
ks_wait_relaying 1 || true
conns="$(ctl show conns json)"
bport="$(jq -r '(.conns // .)[] | select(.state == "relay") | .backend_port' <<<"$conns" | head -1)"
ok "show conns lists the open session with its backend port ($bport)" test -n "$bport" -a "$bport" != 0
like "$(jq -r '(.conns // .)[0] | [.user, .database, .tls] | join(" ")' <<<"$conns")" '^app app TLSv1\.[23]$' \
    "show conns shows user, database and TLS version"
clients="$(fx_pgb_admin "SHOW CLIENTS" 2>/dev/null)"
like "$clients" "\|$bport\|" "the same port appears in PgBouncer's SHOW CLIENTS"
wait "$sleeper" || true

# permissions: the socket is 0600 and refuses another uid even if the file allowed it.
# Other users run a copy of the binary: the checkout may sit under a 0700 home.
ctl_bin="$FX_DIR/ktls-sidecar-ctl"
install -m 0755 "$KTLS_SIDECAR" "$ctl_bin"
chmod o+x "$FX_DIR"
is "$(stat -c %a "$KS_ADMIN")" 600 "admin socket mode is 0600"
chmod 0755 "$(dirname "$KS_ADMIN")"
chmod 0666 "$KS_ADMIN"
out="$(runuser -u nobody -- "$ctl_bin" ctl --admin-socket "$KS_ADMIN" show info 2>&1)" || true
like "$out" 'permission denied' "another uid is refused by SO_PEERCRED"
chmod 0600 "$KS_ADMIN"
admin_sock="$KS_ADMIN"
# ssl-cert is one of postgres's supplementary groups (Debian's postgresql-common), and
# the socket's directory is one the sidecar makes (0750)
gsock="$FX_DIR/run-grp/admin.sock"
ks_start grp "$io" --admin-group ssl-cert --admin-socket "$gsock" || BAIL_OUT "sidecar did not start"
is "$(stat -c '%a %G' "$gsock")" "660 ssl-cert" "--admin-group: the socket is group-accessible (0660)"
is "$(stat -c '%a %G' "$(dirname "$gsock")")" "750 ssl-cert" "... and so is the directory it made"
like "$(runuser -u postgres -- "$ctl_bin" ctl --admin-socket "$gsock" show info 2>&1)" 'version' \
    "a member of the admin group (a supplementary one) may use it"
like "$(runuser -u nobody -- "$ctl_bin" ctl --admin-socket "$gsock" show info 2>&1)" 'denied' \
    "... others still may not"
fx_sidecar_stop grp || true
# a directory that was there before (root, 0750) is not the sidecar's to change: it says so
mkdir -m 0750 "$FX_DIR/run-grp2"
ks_start grp2 "$io" --admin-group ssl-cert --admin-socket "$FX_DIR/run-grp2/admin.sock" || BAIL_OUT "sidecar did not start"
is "$(stat -c '%a %G' "$FX_DIR/run-grp2")" "750 root" "--admin-group leaves a directory it did not make alone"
like "$(cat "$(fx_sidecar_log grp2)")" "directory.*keeps the group out" "... and warns that it keeps the group out"
fx_sidecar_stop grp2 || true
gid="$(getent group ssl-cert | cut -d: -f3)"
ks_start grp3 "$io" --admin-group "$gid" --admin-socket "$FX_DIR/run-grp3/admin.sock" || BAIL_OUT "sidecar did not start"
is "$(stat -c '%a %G' "$FX_DIR/run-grp3/admin.sock")" "660 ssl-cert" "--admin-group takes a numeric gid ($gid)"
fx_sidecar_stop grp3 || true
rc=0; out="$(ks_run_fg --admin-socket "$FX_DIR/grp4.sock" --admin-group no-such-group-ks)" || rc=$?
ok "--admin-group naming no group: refused (exit $rc)" test "$rc" -ne 0
like "$out" 'no such group.*no-such-group-ks' "... saying so, not 'No such file or directory'"
KS_ADMIN="$admin_sock"

# metrics and health
m="$(python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$mport/metrics', timeout=5).read().decode())")"
ok "/metrics parses as Prometheus text" python3 - "$m" <<'PY'
import re, sys
text = sys.argv[1]
line = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.eE+-]+|NaN|\+Inf$')
seen = set()
for l in text.splitlines():
    if not l or l.startswith('#'):
        continue
    if not line.match(l):
        sys.exit('bad line: ' + l)
    seen.add(l.split('{')[0].split(' ')[0])
need = {'ktls_sidecar_connections_active', 'ktls_sidecar_handshake_duration_seconds_bucket',
        'ktls_sidecar_handshake_duration_seconds_count', 'ktls_sidecar_bytes_total'}
missing = need - seen
sys.exit('missing: %s' % missing if missing else 0)
PY
like "$m" 'ktls_sidecar_handshakes_total\{result="ok"\} [1-9]' "/metrics counts the handshakes"
na="$(date -u -d "$(openssl x509 -noout -enddate -in "$FX_CERTS/server.crt" | cut -d= -f2)" +%s)"
like "$m" "ktls_sidecar_certificate_expiry_timestamp_seconds $na"$'\n' \
    "/metrics: the certificate's notAfter as Unix time ($na)"
like "$m" 'ktls_sidecar_reloads_total\{result="failed"\} 0' "/metrics: no failed reload yet"
info="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json)"
is "$(jq -r .cert_serial <<<"$info")" "$(openssl x509 -noout -serial -in "$FX_CERTS/server.crt" | cut -d= -f2)" \
    "show info: the certificate's serial, as openssl prints it"
is "$(jq -r .cert_not_after <<<"$info")" "$(date -u -d "@$na" +%Y-%m-%dT%H:%M:%SZ)" "show info: notAfter in ISO 8601"
http() { python3 -c "
import urllib.request, urllib.error, sys
try:
    r = urllib.request.urlopen('http://127.0.0.1:$mport$1', timeout=5); print(r.status)
except urllib.error.HTTPError as e: print(e.code)"; }
is "$(http /healthz)" 200 "/healthz 200"
is "$(http /readyz)" 200 "/readyz 200 while PgBouncer is up"
fx_pgbouncer_stop
is "$(http /readyz)" 503 "/readyz 503 when PgBouncer is down"
is "$(http /healthz)" 200 "... while /healthz stays 200"
fx_pgbouncer_start >/dev/null
is "$(http /readyz)" 200 "/readyz recovers when PgBouncer is back"
is "$(http /nope)" 404 "unknown path 404"

ok "JSON logs: every line parses" python3 -c "
import json, sys
for l in open('$log'):
    json.loads(l)"
like "$(cat "$log")" '"msg":"closed".*"reason":"eof"' "JSON logs carry the per-connection close line"
is "$(grep '"msg":"closed"' "$log" | head -1 | jq -c '[(.bytes_in, .bytes_out, .duration_ms, .conn) | type] | unique')" \
    '["number"]' "JSON logs: counts and durations are numbers, not strings"
is "$(grep '"msg":"closed"' "$log" | head -1 | jq -c '[(.user, .database, .reason) | type] | unique')" '["string"]' \
    "... while names stay strings"
is "$(grep '"msg":"listening"' "$log" | jq -r '.serial | type')" string "... and the certificate serial (hex: quoted at its source) is a string"
fx_sidecar_stop adm || true
ks_check_log adm
done_testing
