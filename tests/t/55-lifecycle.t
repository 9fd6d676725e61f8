#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Pod lifecycle: certificate rotation the way Kubernetes updates a mounted
# Secret (new directory, atomic rename of the ..data symlink), SIGHUP and the
# admin `reload`, broken replacements refused with the old certificate kept,
# and graceful drain on SIGTERM / SIGINT / drain timeout.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
C="$FX_CERTS"
S="$FX_DIR/secret"
mkdir -p "$S"

# A fresh server certificate for localhost, signed by the test CA, into dir $1.
mkcert() {
    mkdir -p "$1"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/tls.key" \
        -subj /CN=localhost -out "$1/req.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$1/ext"
    openssl x509 -req -in "$1/req.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 30 -extfile "$1/ext" -out "$1/tls.crt" 2>/dev/null
    cp "$C/ca.crt" "$1/ca.crt"
}
# Point ..data at directory $1 the way kubelet does: new symlink, then rename over.
swap() { ln -sfn "$1" "$S/..data_tmp" && mv -T "$S/..data_tmp" "$S/..data"; }
serial_of() { openssl x509 -noout -serial -in "$1" | cut -d= -f2; }
served_serial() {
    echo | fx_with_timeout 10 openssl s_client -starttls postgres -connect "127.0.0.1:$KS_PORT" 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
reload_result() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .reload_result; }
reloads() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq '(.reloads_ok // 0) + (.reloads_partial // 0) + (.reloads_failed // 0)'; }
# Wait (15 s at most) until a reload after the count $1 has happened, whatever its outcome.
reloaded_since() { (( $(reloads) > $1 )); }
wait_reload() { _fx_wait_until 15 reloaded_since "$1"; }
wait_serial() { for _ in $(seq 40); do [[ "$(served_serial)" == "$1" ]] && return 0; sleep 0.25; done; return 1; }

io="$(ks_io_modes | awk '{print $1}')"
mkcert "$S/..2026_1"
swap ..2026_1
ln -s ..data/tls.crt "$S/tls.crt"
ln -s ..data/tls.key "$S/tls.key"
ks_start rot "$io" --cert "$S/tls.crt" --key "$S/tls.key" || BAIL_OUT "sidecar did not start"
s1="$(serial_of "$S/..2026_1/tls.crt")"
is "$(served_serial)" "$s1" "the mounted certificate is served"

out="$FX_DIR/long.out"
fx_psql "$(ks_dsn)" -c 'select pg_sleep(2)' -c 'select 77' >"$out" 2>&1 &
long=$!
fx_register_pid "$long"
ks_wait_relaying 1 || true
mkcert "$S/..2026_2"
swap ..2026_2
s2="$(serial_of "$S/..2026_2/tls.crt")"
ok "after the ..data swap a new handshake sees the new serial" wait_serial "$s2"
is "$(reload_result)" ok "show info reports the reload as ok"
rc=0; wait "$long" || rc=$?
is "$rc" 0 "a session opened before the swap keeps working"
like "$(cat "$out")" '77' "... and finishes its queries"

mkdir -p "$S/..2026_3"
cp "$S/..2026_2/tls.crt" "$S/..2026_3/tls.crt"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$S/..2026_3/tls.key" 2>/dev/null
n="$(reloads)"
swap ..2026_3
wait_reload "$n" || true
is "$(served_serial)" "$s2" "a key that does not match: the old certificate stays in service"
like "$(reload_result)" 'refused.*(mismatch|does not match)' "... and show info says why"
mkdir -p "$S/..2026_4"
echo "not a certificate" >"$S/..2026_4/tls.crt"
cp "$S/..2026_2/tls.key" "$S/..2026_4/tls.key"
n="$(reloads)"
swap ..2026_4
wait_reload "$n" || true
is "$(served_serial)" "$s2" "an unparseable certificate is refused too"
mkdir -p "$S/..2026_5"
cp "$C/expired.crt" "$S/..2026_5/tls.crt" # fx_certs made it with openssl ca -enddate in the past
cp "$C/expired.key" "$S/..2026_5/tls.key"
n="$(reloads)"
swap ..2026_5
wait_reload "$n" || true
is "$(served_serial)" "$s2" "an expired certificate is refused"
like "$(reload_result)" 'expired' "... with the reason"
like "$(cat "$(fx_sidecar_log rot)")" 'msg="certificate reload failed"' "failed reloads are logged"

mkcert "$S/..2026_6"
cp "$S/..2026_6/tls.crt" "$S/..2026_6/tls.crt.new"
fx_sidecar_stop rot || true
ks_start hup "$io" --cert "$S/..2026_6/tls.crt" --key "$S/..2026_6/tls.key" --no-watch-certs || BAIL_OUT "start"
s6="$(serial_of "$S/..2026_6/tls.crt")"
is "$(served_serial)" "$s6" "--no-watch-certs: serves the file it was given"
mkcert "$FX_DIR/next"
cp "$FX_DIR/next/tls.key" "$S/..2026_6/tls.key"
cp "$FX_DIR/next/tls.crt" "$S/..2026_6/tls.crt"
sleep 1
is "$(served_serial)" "$s6" "... and does not reload on its own"
kill -HUP "${FX_SIDECAR_PIDS[hup]}"
ok "SIGHUP reloads" wait_serial "$(serial_of "$FX_DIR/next/tls.crt")"
mkcert "$FX_DIR/next2"
cp "$FX_DIR/next2/tls.key" "$S/..2026_6/tls.key"
cp "$FX_DIR/next2/tls.crt" "$S/..2026_6/tls.crt"
like "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" reload)" '^OK' "admin 'reload' answers OK"
is "$(served_serial)" "$(serial_of "$FX_DIR/next2/tls.crt")" "... and the new certificate is served"
fx_sidecar_stop hup || true

# --- a Secret item in a subdirectory (items: path: certs/tls.crt): certs -> ..data/certs.
# The watch on certs follows the symlink into the timestamped directory, which kubelet
# deletes after the swap; each later swap must still be seen.
V="$FX_DIR/vol"
mkdir -p "$V"
vswap() { ln -sfn "$1" "$V/..data_tmp" && mv -T "$V/..data_tmp" "$V/..data"; }
mkcert "$V/..v1/certs"
vswap ..v1
ln -s ..data/certs "$V/certs"
ks_start sub "$io" --cert "$V/certs/tls.crt" --key "$V/certs/tls.key" || BAIL_OUT "start"
is "$(served_serial)" "$(serial_of "$V/..v1/certs/tls.crt")" "certs -> ..data/certs: served"
for n in 2 3 4; do
    mkcert "$V/..v$n/certs"
    vswap "..v$n"
    rm -rf "$V/..v$((n - 1))"
    ok "certs -> ..data/certs: swap $n (the old directory deleted) is served" \
        wait_serial "$(serial_of "$V/..v$n/certs/tls.crt")"
done
fx_sidecar_stop sub || true

# --- a plain directory (no symlinks) renamed away and replaced by a new one, filled
# after the rename: the watch must move to the new directory, even though the
# reloads tried while it was missing or empty failed.
R="$FX_DIR/rd"
mkcert "$R/certs"
ks_start rdir "$io" --cert "$R/certs/tls.crt" --key "$R/certs/tls.key" || BAIL_OUT "start"
is "$(served_serial)" "$(serial_of "$R/certs/tls.crt")" "a plain certificate directory: served"
mkcert "$FX_DIR/rd-next"
mv "$R/certs" "$R/certs.old"
sleep 1
mkdir "$R/certs"
sleep 1
cp "$FX_DIR/rd-next/tls.key" "$R/certs/tls.key"
cp "$FX_DIR/rd-next/tls.crt" "$R/certs/tls.crt"
ok "the directory renamed away and refilled: the new certificate is served" \
    wait_serial "$(serial_of "$FX_DIR/rd-next/tls.crt")"
mkcert "$FX_DIR/rd-next2"
cp "$FX_DIR/rd-next2/tls.key" "$R/certs/tls.key"
cp "$FX_DIR/rd-next2/tls.crt" "$R/certs/tls.crt"
ok "... and later writes into the new directory are seen too" wait_serial "$(serial_of "$FX_DIR/rd-next2/tls.crt")"
fx_sidecar_stop rdir || true

# --- the configuration file is read again on reload: a client removed from an
# allow-list is refused without a restart; ConfigMap-style volume, watched.
M="$FX_DIR/cm"
mkdir -p "$M/..c1" "$M/..c2" "$M/..c3" "$M/..c4"
mswap() { ln -sfn "$1" "$M/..data_tmp" && mv -T "$M/..data_tmp" "$M/..data"; }
printf 'verify = require\nclient-ca = %s\nallow-cn = alice\nallow-cn = mallory\n' "$C/ca.crt" >"$M/..c1/ks.conf"
mswap ..c1
ln -s ..data/ks.conf "$M/ks.conf"
mport="$(fx_free_port)"
# given the way inject does it: KTLS_SIDECAR_CONFIG, a directory of its own
KTLS_SIDECAR_CONFIG="$M/ks.conf" ks_start cfg "$io" --metrics-listen "127.0.0.1:$mport" || BAIL_OUT "start"
as() { echo "sslcert=$C/$1.crt sslkey=$C/$1.key"; }
admits() { [[ "$(fx_psql "$(ks_dsn "$(as "$1")")" -c 'select 1' 2>/dev/null)" == 1 ]]; }
refuses() { ! admits "$1"; }
wait_for() { _fx_wait_until 10 "$@"; }
ok "config file: mallory is in the allow-list and admitted" admits mallory
unlike "$(cat "$(fx_sidecar_log cfg)")" 'level=debug' "log-level info: no debug lines yet"
printf 'verify = require\nclient-ca = %s\nallow-cn = alice\nidle-timeout = 5m\nlog-level = debug\n' "$C/ca.crt" \
    >"$M/..c2/ks.conf"
mswap ..c2
ok "mallory removed from the file: refused after the watched reload" wait_for refuses mallory
ok "... alice still admitted" admits alice
like "$(cat "$(fx_sidecar_log cfg)")" 'level=debug' "log-level = debug in the file applies at the reload"
msg="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" reload)"
like "$msg" '^OK.*not applied until restart: idle-timeout' "reload names the option that waits for a restart"
printf 'verify = require\nclient-ca = %s\nallow-cn = mallory\nbogus-option = 1\n' "$C/ca.crt" >"$M/..c3/ks.conf"
n="$(reloads)"
mswap ..c3
wait_reload "$n" || true
rc=0; msg="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" reload 2>&1)" || rc=$?
is "$rc" 1 "a broken configuration file: reload answers an error (exit 1)"
like "$msg" 'configuration not re-read.*bogus-option.*; certificates reloaded: subject=' \
    "... saying why the file was not taken, and that the certificates rotated"
ok "... and the settings in service stay: mallory refused" refuses mallory
m="$(python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$mport/metrics', timeout=5).read().decode())")"
like "$m" 'ktls_sidecar_reloads_total\{result="partial"\} [1-9]' "/metrics counts the partial reloads"
like "$m" 'ktls_sidecar_reloads_total\{result="ok"\} [1-9]' "... and the good ones"
ok "... alice admitted" admits alice
# the client CA is watched too: a bundle that no longer holds the test CA (and a
# CRL, revoking nobody, that the next configuration drops)
openssl ca -batch -config "$C/openssl.cnf" -cert "$C/ca.crt" -keyfile "$C/ca.key" -gencrl -crldays 7 \
    -out "$C/none-revoked.crl" >>"$C/openssl.log" 2>&1 || BAIL_OUT "openssl ca -gencrl failed"
printf 'verify = require\nclient-ca = %s\nallow-cn = alice\nclient-crl = %s\n' "$M/ca/bundle.crt" \
    "$C/none-revoked.crl" >"$M/..c4/ks.conf"
mkdir -p "$M/..c4/ca"
cp "$C/ca.crt" "$M/..c4/ca/bundle.crt"
mswap ..c4
ln -s ..data/ca "$M/ca"
reloaded_ok() { [[ "$(reload_result)" == ok ]]; }
ok "the client CA moved into the volume (ca -> ..data/ca): reloaded" wait_for reloaded_ok
ok "... alice admitted" admits alice
cp "$C/untrusted-ca.crt" "$M/..c4/ca/bundle.tmp" && mv "$M/..c4/ca/bundle.tmp" "$M/..c4/ca/bundle.crt"
ok "the CA bundle replaced by a foreign CA: alice refused after the watched reload" wait_for refuses alice
mkdir -p "$M/..c5"
printf 'verify = optional\nclient-ca = %s\n' "$C/ca.crt" >"$M/..c5/ks.conf"
n="$(reloads)"
mswap ..c5
wait_reload "$n" || true
like "$(cat "$(fx_sidecar_log cfg)")" 'relaxes client certificate checks" verify_was=require verify=optional' \
    "a reload that relaxes verify is logged as a warning"
like "$(cat "$(fx_sidecar_log cfg)")" 'level=warn .*no allow-lists' "... and one that drops the allow-lists"
like "$(cat "$(fx_sidecar_log cfg)")" 'level=warn .*no client CRL: revoked client certificates are admitted' \
    "... and one that drops the client CRL"
ok "... and applied: mallory admitted" admits mallory
fx_sidecar_stop cfg || true
ks_check_log cfg

# --config <(...): a pipe reads empty the second time; a reload must not take that
# for a file without verify and allow-lists
ks_start pipe "$io" --no-watch-certs \
    --config <(printf 'verify = require\nclient-ca = %s\nallow-cn = alice\n' "$C/ca.crt") || BAIL_OUT "start"
ok "config from a pipe: mallory refused" refuses mallory
rc=0; msg="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" reload 2>&1)" || rc=$?
like "$msg" 'not re-read.*not a regular file' "reload: the pipe is not read again, and says so"
ok "... mallory still refused" refuses mallory
nok "... a client without a certificate still refused" fx_psql "$(ks_dsn)" -c 'select 1'
ok "... alice admitted" admits alice
fx_sidecar_stop pipe || true
# a named FIFO fed once at startup: opening it again would block for good
mkfifo "$FX_DIR/ks.fifo"
printf 'verify = require\nclient-ca = %s\nallow-cn = alice\n' "$C/ca.crt" >"$FX_DIR/ks.fifo" &
fx_register_pid $!
ks_start fifo "$io" --no-watch-certs --config "$FX_DIR/ks.fifo" || BAIL_OUT "start"
rc=0; msg="$(fx_with_timeout 10 "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" reload 2>&1)" || rc=$?
like "$msg" 'not re-read.*ks.fifo: not a regular file' "a named FIFO as config: the reload does not block on it"
ok "... mallory still refused" refuses mallory
rc=0; fx_sidecar_stop fifo || rc=$?
is "$rc" 0 "... and the sidecar stops cleanly"

# --- drain
ks_start drain "$io" --drain-timeout 10s || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[drain]}"
fx_psql "$(ks_dsn)" -c 'select pg_sleep(3)' -c 'select 88' >"$out" 2>&1 &
long=$!
fx_register_pid "$long"
ks_wait_relaying 1 || true
t0=$(date +%s%N)
kill -TERM "$pid"
tcp_refused() { ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KS_PORT" 2>/dev/null; }
wait_for tcp_refused || true
nok "while draining, new connections are refused" fx_psql "$(ks_dsn)" -c 'select 1'
rc=0; wait "$long" || rc=$?
is "$rc" 0 "the running query completes during the drain"
like "$(cat "$out")" '88' "... with its result"
rc=0; fx_sidecar_stop drain || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" 0 "SIGTERM: exit status 0"
ok "exited within the drain timeout (${ms} ms < 10000)" test "$ms" -lt 10000

ks_start drain2 "$io" --drain-timeout 1s || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[drain2]}"
fx_psql "$(ks_dsn)" -c 'select pg_sleep(20)' >"$out" 2>&1 &
long=$!
fx_register_pid "$long"
ks_wait_relaying 1 || true
t0=$(date +%s%N)
kill -TERM "$pid"
rc=0; wait "$long" || rc=$?
isnt "$rc" 0 "a session still open at the drain timeout is closed"
rc=0; fx_sidecar_stop drain2 || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" 0 "... and the sidecar exits 0"
ok "... about the drain timeout later (${ms} ms)" test "$ms" -lt 5000
like "$(cat "$(fx_sidecar_log drain2)")" 'reason=shutdown' "the closed session is logged with reason=shutdown"
like "$(cat "$out")" 'FATAL:  terminating connection due to administrator command' \
    "... and psql shows why: PostgreSQL's FATAL for a shutdown (57P01)"

# --drain-close-idle: a session waiting between transactions is closed at once, with
# PostgreSQL's FATAL; one inside a transaction is left to commit first, then closed
ks_start drain3 "$io" --drain-timeout 20s --drain-close-idle || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[drain3]}"
fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" idle 25 >"$FX_DIR/drain3-idle.out" 2>&1 &
idle=$!
fx_register_pid "$idle"
# and one whose last messages were a Sync and a Flush (some drivers send that)
fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" sync-flush 25 >"$FX_DIR/drain3-flush.out" 2>&1 &
flush=$!
fx_register_pid "$flush"
{ echo 'begin;'; echo 'select 1;'; sleep 3; echo 'select 2;'; echo 'commit;'; sleep 2; echo 'select 3;'; } |
    fx_with_timeout 30 fx_psql "$(ks_dsn)" >"$FX_DIR/drain3-tx.out" 2>&1 &
tx=$!
fx_register_pid "$tx"
ks_wait_relaying 3 || true
sleep 0.5 # psql's BEGIN is through
is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show conns json | jq -r '[.conns[].txn] | sort | join(",")')" \
    "idle,idle,in_transaction" "show conns: txn tells the sessions between transactions from the one inside one"
t0=$(date +%s%N)
kill -TERM "$pid"
wait "$idle" || true
wait "$flush" || true
is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show conns json | jq -r '[.conns[].txn] | join(",")')" \
    "in_transaction" "... during the drain, only the one inside a transaction is left"
left="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .drain_left_s)"
ok "... and show info gives the time to the drain deadline (${left} s of 20)" \
    awk -v l="$left" 'BEGIN { exit !(l > 10 && l <= 20) }'
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
like "$(cat "$FX_DIR/drain3-idle.out")" '^closed.*fatal 57P01: terminating connection due to administrator command$' \
    "--drain-close-idle: a session waiting at ReadyForQuery is closed with FATAL 57P01"
like "$(cat "$FX_DIR/drain3-flush.out")" '^closed.*fatal 57P01' "... and so is one after a Sync and a Flush"
ok "... at once, not at the drain timeout (${ms} ms)" test "$ms" -lt 3000
wait "$tx" || true
txout="$(cat "$FX_DIR/drain3-tx.out")"
like "$txout" $'^1\n2(\n|$)' "... a session inside a transaction ran it to its COMMIT: $txout"
like "$txout" 'FATAL:  terminating connection due to administrator command' "... then was closed between transactions"
unlike "$txout" $'\n3(\n|$)' "... before its next statement ran"
rc=0; fx_sidecar_stop drain3 || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" 0 "... and the sidecar exits 0"
ok "... once all were closed, well before the 20 s drain timeout (${ms} ms)" test "$ms" -lt 12000
like "$(cat "$(fx_sidecar_log drain3)")" 'draining: not accepting.*close_idle=true' "... the drain's log line says close-idle is on"
is "$(grep -c 'reason=drain_idle' "$(fx_sidecar_log drain3)")" 3 "... the three closes logged as reason=drain_idle"

# --drain-close-idle and an extended-protocol batch that has no Sync yet (an implicit
# transaction): left to finish, and closed after its Sync's ReadyForQuery
fx_psql "host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app" -c 'create table drain_unsynced(v int)' >/dev/null ||
    BAIL_OUT "create table failed"
ks_start drain4 "$io" --drain-timeout 20s --drain-close-idle || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[drain4]}"
PGWIRE_READY="$FX_DIR/unsynced.ready" fx_with_timeout 40 python3 "$PGWIRE" unsynced "$KS_PORT" drain_unsynced 3 \
    >"$FX_DIR/unsynced.out" 2>&1 &
un=$!
fx_register_pid "$un"
ks_wait_file "$FX_DIR/unsynced.ready" || true
kill -TERM "$pid"
wait "$un" || true
is "$(cat "$FX_DIR/unsynced.out")" "Z E57P01 closed" \
    "--drain-close-idle: a batch without its Sync yet is not cut; after its ReadyForQuery, FATAL 57P01"
is "$(fx_psql "host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app" -c 'select count(*) from drain_unsynced')" 1 \
    "... and its INSERT committed"
fx_sidecar_stop drain4 || true

# --drain-close-idle under load: pgbench clients busy with multi-statement transactions
# are each closed at the end of one, promptly, none inside
fx_with_timeout 120 runuser -u postgres -- "$FX_PGBIN/pgbench" -q -i -s 1 -U app -h "$FX_PG_SOCKDIR" \
    -p "$FX_PG_PORT" app >/dev/null 2>&1 || BAIL_OUT "pgbench -i failed"
ks_start drain5 "$io" --drain-timeout 20s --drain-close-idle || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[drain5]}"
fx_with_timeout 60 pgbench -n -N -c 4 -j 2 -T 30 "$(ks_dsn)" >"$FX_DIR/drain5.out" 2>&1 &
load=$!
fx_register_pid "$load"
ks_wait_relaying 4 || true
sleep 2
t0=$(date +%s%N)
kill -TERM "$pid"
rc=0; fx_sidecar_stop drain5 || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$load" || true
pgb="$(cat "$FX_DIR/drain5.out")"
is "$rc" 0 "--drain-close-idle under pgbench -N: the sidecar exits 0"
ok "... within a few seconds, not at the 20 s drain timeout (${ms} ms)" test "$ms" -lt 8000
is "$(grep -c 'terminating connection due to administrator command' <<<"$pgb")" 4 "... each of the 4 clients told why"
unlike "$pgb" 'aborted in command [5-9]' "... none inside a transaction (BEGIN is command 4)"

# a FATAL never goes into the middle of a message: a pooler that sent the first 15
# bytes of a DataRow and stalls; at the shutdown the client gets those bytes and the
# close, nothing more
sport="$(fx_free_port)"
python3 "$PGWIRE" stall-server "$sport" >"$FX_DIR/stall.log" 2>&1 &
fx_register_pid $!
for _ in $(seq 50); do grep -q listening "$FX_DIR/stall.log" 2>/dev/null && break; sleep 0.1; done
ks_start stall "$io" --backend "127.0.0.1:$sport" || BAIL_OUT "sidecar did not start"
PGWIRE_READY="$FX_DIR/half.ready" fx_with_timeout 30 python3 "$PGWIRE" half-answer "$KS_PORT" 20 >"$FX_DIR/half.out" 2>&1 &
half=$!
fx_register_pid "$half"
ks_wait_file "$FX_DIR/half.ready" || true
fx_sidecar_stop stall INT || true
wait "$half" || true
is "$(cat "$FX_DIR/half.out")" "closed 15 bytes" "shutdown in the middle of a DataRow: no FATAL behind the partial message"

ks_start int "$io" || BAIL_OUT "sidecar did not start"
# a second instance on the same port is refused, not quietly let into the SO_REUSEPORT group
rc=0; second="$(fx_with_timeout 10 "$KTLS_SIDECAR" run --listen "127.0.0.1:$KS_PORT" --admin-socket "" \
    --backend "127.0.0.1:$FX_PGB_PORT" --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" 2>&1)" || rc=$?
is "$rc" 1 "a second instance on the same port exits 1"
like "$second" 'cannot listen.*Address already in use' "... saying the address is in use"
is "$(fx_psql "$(ks_dsn)" -c 'select 13')" 13 "the first one still serves"
lp="$(fx_free_port)"
rc=0; loop="$(fx_with_timeout 10 "$KTLS_SIDECAR" run --listen "0.0.0.0:$lp" --backend "127.0.0.1:$lp" \
    --admin-socket "" --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" 2>&1)" || rc=$?
is "$rc" 1 "a backend that is the sidecar's own listener: refused at startup"
like "$loop" 'every connection would loop' "... saying why"
fx_psql "$(ks_dsn)" -c 'select pg_sleep(20)' >"$out" 2>&1 &
long=$!
fx_register_pid "$long"
ks_wait_relaying 1 || true
t0=$(date +%s%N)
rc=0; fx_sidecar_stop int INT || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" 0 "SIGINT: exit status 0"
ok "SIGINT does not wait for sessions (${ms} ms)" test "$ms" -lt 2000
wait "$long" || true
like "$(cat "$out")" 'FATAL:  terminating connection due to administrator command' "... and tells them why"
done_testing
