#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/lib/selftest.t: TAP self-test of tests/lib/{tap,fixture}.sh: free ports,
# PostgreSQL + PgBouncer (TCP and unix socket), the openssl PKI, the sidecar
# start/stop helpers (against a fake sidecar), fx_with_timeout, and teardown
# by the EXIT trap and by the watchdog after SIGKILL.  Run: prove -v tests/lib/selftest.t
# shellcheck disable=SC2016,SC2317,SC2154  # child scripts in single quotes; indirect calls; _tap_* from tap.sh
set -euo pipefail

LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fixture.sh
source "$LIB/fixture.sh"

T0=$(_fx_now_ms)
[[ $EUID == 0 ]] || skip_all "needs root (runuser -u postgres)"
[[ -x "$FX_PGBIN/initdb" && -x "$FX_PGBOUNCER" ]] || skip_all "postgresql-15 / pgbouncer not installed"

ok "fx_init" fx_init
ok "FX_DIR is a private dir under /tmp" test -d "$FX_DIR"
like "$FX_DIR" '^/tmp/ktls-fx\.' "FX_DIR name"

# ---------------------------------------------------------------- ports
ports=()
for _ in $(seq 20); do ports+=("$(fx_free_port)"); done
is "$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)" 20 "fx_free_port: 20 distinct ports"
# every port can actually be bound (and listened on) on 127.0.0.1
ok "fx_free_port: all ports bindable" /usr/bin/python3 -c '
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket(); s.bind(("127.0.0.1", int(p))); s.listen(); s.close()' "${ports[@]}"
is "$(cat "$FX_PORT_REG/${ports[0]}/owner")" "$FX_DIR" "fx_free_port: port reserved for this FX_DIR"

# ----------------------------------------------------------- postgres
t=$(_fx_now_ms)
ok "fx_pg_start" fx_pg_start
note "initdb + postgres start took $(($(_fx_now_ms) - t)) ms"
like "${FX_PG_PORT:-}" '^[0-9]+$' "FX_PG_PORT exported"
ok "postgres unix socket in FX_PG_SOCKDIR" test -S "$FX_PG_SOCKDIR/.s.PGSQL.$FX_PG_PORT"
is "$(fx_psql -h 127.0.0.1 -p "$FX_PG_PORT" -U app -d app -c 'select current_user || current_database()')" "appapp" \
    "direct TCP query as app to database app"
is "$(fx_psql -h "$FX_PG_SOCKDIR" -p "$FX_PG_PORT" -U postgres -d postgres -c 'show fsync')" "off" "fsync=off"
is "$(fx_psql -h "$FX_PG_SOCKDIR" -p "$FX_PG_PORT" -U postgres -d postgres -c 'show max_connections')" "200" \
    "max_connections=200"

# ---------------------------------------------------------- pgbouncer
t=$(_fx_now_ms)
ok "fx_pgbouncer_start" fx_pgbouncer_start
note "pgbouncer start took $(($(_fx_now_ms) - t)) ms"
ok "FX_PGB_PID is a live pgbouncer" _fx_alive "${FX_PGB_PID:-}"
is "$(fx_psql -h 127.0.0.1 -p "$FX_PGB_PORT" -U app -d app -c 'select 40 + 2')" 42 "query through pgbouncer over TCP"
ok "pgbouncer unix socket exists" test -S "$FX_PGB_SOCKDIR/.s.PGSQL.$FX_PGB_PORT"
is "$(fx_psql -h "$FX_PGB_SOCKDIR" -p "$FX_PGB_PORT" -U app -d app -c 'select 43')" 43 \
    "query through pgbouncer over its unix socket"
is "$(PGOPTIONS='-c work_mem=8MB' fx_psql -h 127.0.0.1 -p "$FX_PGB_PORT" -U app -d app -c 'select 1')" 1 \
    "startup parameter 'options' is ignored by pgbouncer"
is "$(fx_psql -h 127.0.0.1 -p "$FX_PGB_PORT" -U postgres -d postgres -c 'select current_user')" postgres \
    "database postgres via pgbouncer"
like "$(fx_pgb_admin 'SHOW CONFIG' | grep '^pool_mode|')" '^pool_mode\|transaction\|' "default pool_mode transaction"
nok "unknown user rejected by pgbouncer" fx_psql -h 127.0.0.1 -p "$FX_PGB_PORT" -U nobody -d app -c 'select 1'
old_port=$FX_PGB_PORT old_pid=$FX_PGB_PID
ok "fx_pgbouncer_restart session" fx_pgbouncer_restart session
is "$FX_PGB_PORT" "$old_port" "restart keeps the port"
isnt "$FX_PGB_PID" "$old_pid" "restart gives a new pid"
ok "old pgbouncer is gone" eval "! _fx_alive $old_pid"
like "$(fx_pgb_admin 'SHOW CONFIG' | grep '^pool_mode|')" '^pool_mode\|session\|' "pool_mode now session"
is "$(fx_psql -h 127.0.0.1 -p "$FX_PGB_PORT" -U app -d app -c 'select 44')" 44 "query after restart"

# ------------------------------------------------------------ certs
t=$(_fx_now_ms)
ok "fx_certs" fx_certs
note "fx_certs took $(($(_fx_now_ms) - t)) ms"
C=$FX_CERTS
for c in server server-ec wronghost alice mallory; do
    ok "$c.crt verifies against ca.crt" openssl verify -CAfile "$C/ca.crt" "$C/$c.crt"
    is "$(openssl pkey -in "$C/$c.key" -pubout | sha256sum)" "$(openssl x509 -in "$C/$c.crt" -noout -pubkey | sha256sum)" \
        "$c.key matches $c.crt"
    is "$(stat -c %a "$C/$c.key")" 600 "$c.key mode 0600"
done
like "$(openssl verify -CAfile "$C/ca.crt" "$C/expired.crt" 2>&1 || true)" 'certificate has expired' \
    "expired.crt fails verification as expired"
nok "expired.crt: openssl verify exits non-zero" openssl verify -CAfile "$C/ca.crt" "$C/expired.crt"
nok "untrusted.crt fails against ca.crt" openssl verify -CAfile "$C/ca.crt" "$C/untrusted.crt"
ok "untrusted.crt verifies against untrusted-ca.crt" openssl verify -CAfile "$C/untrusted-ca.crt" "$C/untrusted.crt"
like "$(openssl x509 -in "$C/server.crt" -noout -text)" 'Public Key Algorithm: rsaEncryption' "server.crt is RSA"
like "$(openssl x509 -in "$C/server.crt" -noout -text)" 'Public-Key: \(2048 bit\)' "server.crt is 2048 bit"
like "$(openssl x509 -in "$C/server-ec.crt" -noout -text)" 'NIST CURVE: P-256' "server-ec.crt is P-256"
for c in server server-ec; do
    like "$(openssl x509 -in "$C/$c.crt" -noout -checkhost localhost -checkip 127.0.0.1)" \
        'Hostname localhost does match.*IP 127.0.0.1 does match' "$c.crt valid for localhost and 127.0.0.1"
done
like "$(openssl x509 -in "$C/wronghost.crt" -noout -checkhost localhost)" 'does NOT match' "wronghost.crt not valid for localhost"
like "$(openssl x509 -in "$C/alice.crt" -noout -subject -ext subjectAltName)" \
    'CN *= *alice.*URI:spiffe://example.org/ns/app/sa/alice, DNS:alice.app.example.org' "alice subject and SANs"
like "$(openssl x509 -in "$C/mallory.crt" -noout -subject -ext subjectAltName)" \
    'CN *= *mallory.*URI:spiffe://evil.org/x' "mallory subject and SAN"
like "$(openssl x509 -in "$C/expired.crt" -noout -subject -ext subjectAltName)" 'CN *= *alice.*spiffe://example.org' \
    "expired is an alice cert"

# ---------------------------------------------------------- sidecar helpers (fake binary)
FAKE="$FX_DIR/fake-sidecar"
cat >"$FAKE" <<'EOF'
#!/usr/bin/python3
# stand-in for ktls-sidecar: "run --listen HOST:PORT [--die|--ignore-term]"
import signal, socket, sys, time
a = sys.argv[1:]
assert a[0] == "run", a
if "--die" in a:
    print("fake: fatal: bad configuration", file=sys.stderr)
    sys.exit(3)
signal.signal(signal.SIGTERM, signal.SIG_IGN if "--ignore-term" in a else (lambda *_: sys.exit(0)))
listen = [x.split("=", 1)[1] for x in a if x.startswith("--listen=")] or [a[a.index("--listen") + 1]]
host, port = listen[0].rsplit(":", 1)
host = host.strip("[]")
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
time.sleep(0.3)
s.bind((host, int(port)))
s.listen()
print("fake: listening on", host, port, flush=True)
while True:
    s.accept()[0].close()
EOF
chmod +x "$FAKE"

KTLS_SIDECAR="$FX_DIR/does-not-exist" nok "fx_sidecar_start fails for a missing binary" fx_sidecar_start nope --listen 127.0.0.1:1
is "$(cd / && env -u KTLS_SIDECAR bash -c 'source "$1/fixture.sh"; echo "$KTLS_SIDECAR"' _ "$LIB")" \
    "$(cd "$LIB/../.." && pwd)/build/ktls-sidecar" "default KTLS_SIDECAR is derived from the library location"
export KTLS_SIDECAR=$FAKE
p1=$(fx_free_port)
ok "fx_sidecar_start (IPv4)" fx_sidecar_start sc1 --listen "127.0.0.1:$p1" --upstream foo
ok "sidecar pid recorded" _fx_alive "${FX_SIDECAR_PID_sc1:-}"
is "${FX_SIDECAR_PIDS[sc1]:-}" "${FX_SIDECAR_PID_sc1:-}" "FX_SIDECAR_PIDS[sc1] matches FX_SIDECAR_PID_sc1"
ok "sidecar accepts TCP" timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p1"
is "$(fx_sidecar_log sc1)" "$FX_DIR/sc1.log" "fx_sidecar_log"
like "$(cat "$(fx_sidecar_log sc1)")" "listening on 127.0.0.1 $p1" "sidecar output goes to its log"
rc=0; fx_sidecar_stop sc1 || rc=$?
is "$rc" 0 "fx_sidecar_stop returns the exit status (0 after graceful SIGTERM)"

if /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    p2=$(fx_free_port)
    ok "fx_sidecar_start with --listen=[::1]:PORT" fx_sidecar_start sc6 "--listen=[::1]:$p2"
    ok "sidecar accepts TCP on ::1" timeout 2 bash -c "exec 3<>/dev/tcp/::1/$p2"
    ok "fx_sidecar_stop sc6" fx_sidecar_stop sc6
else
    skip "no IPv6 loopback" 3
fi

# _tap_run (tap.sh internal) sets _tap_rc/_tap_out: used to inspect the diagnostics
_tap_run fx_sidecar_start bad --listen "127.0.0.1:$(fx_free_port)" --die
is "$_tap_rc" 1 "fx_sidecar_start returns 1 when the sidecar dies early"
like "$_tap_out" '# fake: fatal: bad configuration' "... and prints its log as diagnostics"
like "$_tap_out" 'exited early \(status 3\)' "... with its exit status"

p3=$(fx_free_port)
ok "fx_sidecar_start (TERM-ignoring)" fx_sidecar_start stubborn --listen "127.0.0.1:$p3" --ignore-term
t=$(_fx_now_ms); rc=0; fx_sidecar_stop stubborn 2>/dev/null || rc=$?; t=$(($(_fx_now_ms) - t))
is "$rc" 137 "fx_sidecar_stop SIGKILLs after 5 s (status 137)"
ok "... within 4.5-8 s (took ${t} ms)" test "$t" -ge 4500 -a "$t" -le 8000

# ---------------------------------------------------------- fx_with_timeout
slow_fn() { sleep 10; }
rc_fn() { return "$1"; }
t=$(_fx_now_ms); rc=0; fx_with_timeout 1 sleep 10 || rc=$?
is "$rc" 124 "fx_with_timeout: external command timed out (124)"
rc=0; fx_with_timeout 1 slow_fn || rc=$?
is "$rc" 124 "fx_with_timeout: shell function timed out (124)"
ok "fx_with_timeout: both returned within 4 s" test $(($(_fx_now_ms) - t)) -lt 4000
rc=0; fx_with_timeout 5 rc_fn 7 || rc=$?
is "$rc" 7 "fx_with_timeout passes a function's exit status through"
is "$(fx_with_timeout 5 echo hi)" hi "fx_with_timeout passes output through"
is "$(echo piped | fx_with_timeout 5 cat)" piped "fx_with_timeout passes stdin through (command)"
is "$(echo piped | fx_with_timeout 5 eval cat)" piped "fx_with_timeout passes stdin through (function/builtin)"

# ---------------------------------------------------------- teardown
# A child test run that starts everything, prints what it started, then exits
# ($1=exit) or SIGKILLs itself ($1=kill).
child() {
    # shellcheck disable=SC2016
    timeout 60 bash -c '
        set -euo pipefail
        source "$1/fixture.sh"
        fx_init; fx_pg_start; fx_pgbouncer_start
        export KTLS_SIDECAR=$3
        # direct calls under set -e: none of these may abort the script
        fx_sidecar_start sc0 --listen "127.0.0.1:$(fx_free_port)"
        { kill -KILL "$FX_SIDECAR_PID_sc0"; sleep 0.2; } 2>/dev/null   # hide the "Killed" job notice
        rc=0; fx_sidecar_stop sc0 2>/dev/null || rc=$?; [[ $rc == 137 ]] || { echo "stop of dead sidecar: $rc"; exit 1; }
        fx_pgbouncer_restart
        fx_sidecar_start sc --listen "127.0.0.1:$(fx_free_port)"
        sleep 30 >/dev/null 2>&1 & fx_register_pid $! sleeper
        echo "$FX_DIR $(head -n1 "$FX_PG_DATA/postmaster.pid") $FX_PGB_PID $FX_SIDECAR_PID_sc $! $FX_PG_PORT $FX_PGB_PORT"
        [[ $2 == kill ]] && kill -KILL $$
        exit 0' child "$LIB" "$1" "$FAKE"
}
# True if nothing from a child run survives: pids dead, no process mentions its dir, dir and reservations gone.
child_clean() {
    local dir=$1 p; shift 1
    for p in "${@:1:4}"; do _fx_alive "$p" && { echo "pid $p still alive"; return 1; }; done
    ps -eo stat=,args= | awk '$1 !~ /^Z/' | grep -F -- "$dir" | grep -v grep && return 1
    [[ -e "$dir" ]] && { echo "$dir still exists"; return 1; }
    for p in "${@:5}"; do [[ -e "$FX_PORT_REG/$p" ]] && { echo "port $p still reserved"; return 1; }; done
    return 0
}
out=$(child exit) || true
read -r cdir pgpid pgbpid scpid slpid pgport pgbport <<<"$out"
like "$out" '^/tmp/ktls-fx\.[^ ]+( [0-9]+){6}$' "child run (exit) started postgres, pgbouncer, sidecar, sleeper"
ok "EXIT trap left no processes, dir or port reservations behind" child_clean "$cdir" "$pgpid" "$pgbpid" "$scpid" "$slpid" "$pgport" "$pgbport"

out=$(child kill) || true
read -r cdir pgpid pgbpid scpid slpid pgport pgbport <<<"$out"
like "$out" '^/tmp/ktls-fx\.[^ ]+( [0-9]+){6}$' "child run (SIGKILLed) started everything"
t=$(_fx_now_ms)
_fx_wait_until 20 child_clean "$cdir" "$pgpid" "$pgbpid" "$scpid" "$slpid" "$pgport" "$pgbport" >/dev/null || true
ok "watchdog cleaned up after SIGKILL within 20 s" child_clean "$cdir" "$pgpid" "$pgbpid" "$scpid" "$slpid" "$pgport" "$pgbport"
note "watchdog cleanup took $(($(_fx_now_ms) - t)) ms"

note "selftest wall time: $(($(_fx_now_ms) - T0)) ms"
done_testing
