#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Privileges and secrets: --user drops root after binding a privileged port and
# reading the key; no key material ever reaches the logs.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
io="$(ks_io_modes | awk '{print $1}')"
port=""
off=$((RANDOM % 300)) # a random start, reserved like fx_free_port's: parallel runs do not collide
for i in $(seq 0 299); do
    p=$((700 + (off + i) % 300))
    [[ -z "$(ss -Hltn "sport = :$p")" ]] && _fx_port_reserve "$p" && { port=$p; break; }
done
[[ -n "$port" ]] || BAIL_OUT "no free privileged port"
fx_sidecar_start priv --listen "127.0.0.1:$port" --backend "127.0.0.1:$FX_PGB_PORT" --io "$io" \
    --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" --admin-socket "$FX_DIR/priv.sock" \
    --user nobody --log-level debug || BAIL_OUT "sidecar did not start"
pid="${FX_SIDECAR_PIDS[priv]}"
is "$(stat -c %a "$FX_CERTS/server.key")" 600 "the key file is readable by root only"
is "$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")" "65534 65534 65534 65534" \
    "--user nobody: every uid of the process is nobody's"
is "$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")" 0000000000000000 "... with no capabilities left"
is "$(fx_psql "host=127.0.0.1 port=$port user=app dbname=app sslmode=require" -c 'select 5')" 5 \
    "serves TLS on privileged port $port after dropping root"
like "$("$KTLS_SIDECAR" ctl --admin-socket "$FX_DIR/priv.sock" show info)" 'version' \
    "the admin socket still answers (root may always ask)"
is "$(stat -c %U "$FX_DIR/priv.sock")" nobody "the admin socket now belongs to the new user"
fx_sidecar_stop priv || true
like "$(cat "$(fx_sidecar_log priv)")" 'level=warn .*msg="the --user cannot read this file: reloads cannot use it" user="nobody" file="[^"]*server.key"' \
    "a key the new user cannot read: a warning at startup, not at the first rotation"
fx_sidecar_start privnum --listen "127.0.0.1:$(fx_free_port)" --backend "127.0.0.1:$FX_PGB_PORT" --io "$io" \
    --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" --admin-socket "" --user 65534 ||
    BAIL_OUT "sidecar did not start"
is "$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/${FX_SIDECAR_PIDS[privnum]}/status")" "65534 65534 65534 65534" \
    "--user 65534: a numeric uid (a container's runAsUser) is taken"
fx_sidecar_stop privnum || true
rc=0; out="$(ks_run_fg --admin-socket "" --user 4242421)" || rc=$?
ok "--user with a uid that has no passwd entry: refused (exit $rc)" test "$rc" -ne 0
like "$out" 'no such user' "... saying so"

# --user keeps the user's supplementary groups: a key readable only through ssl-cert
# (Debian's layout; postgres is a member) still reloads after dropping root, and the
# socket directory the sidecar made is handed over, so the socket goes when it stops
kdir="$FX_DIR/ssl-private"
mkdir -p "$kdir" && cp "$FX_CERTS/server.key" "$FX_CERTS/server.crt" "$kdir/" &&
    chown root:ssl-cert "$kdir" "$kdir/server.key" && chmod 0710 "$kdir" && chmod 0640 "$kdir/server.key" ||
    BAIL_OUT "key directory"
chmod o+x "$FX_DIR"
sock="$FX_DIR/run-grp/admin.sock"
grp_port="$(fx_free_port)"
fx_sidecar_start grp --listen "127.0.0.1:$grp_port" --backend "127.0.0.1:$FX_PGB_PORT" --io "$io" \
    --cert "$kdir/server.crt" --key "$kdir/server.key" --admin-socket "$sock" --user postgres \
    || BAIL_OUT "sidecar did not start"
like "$("$KTLS_SIDECAR" ctl --admin-socket "$sock" reload 2>&1)" '^OK: ' \
    "--user postgres: a key readable through a supplementary group reloads"
# the directory is watched although postgres may not list it: the watch is set up as root
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$FX_DIR/next.key" \
    -out "$FX_DIR/next.crt" -subj /CN=localhost -days 2 2>/dev/null || BAIL_OUT "next cert"
next="$(openssl x509 -noout -serial -in "$FX_DIR/next.crt" | cut -d= -f2)"
cp "$FX_DIR/next.key" "$kdir/server.key" && cp "$FX_DIR/next.crt" "$kdir/server.crt"
served() {
    echo | fx_with_timeout 10 openssl s_client -starttls postgres -connect "127.0.0.1:${1:-$grp_port}" 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
serves() { [[ "$(served "$1")" == "$2" ]]; }
_fx_wait_until 10 serves "$grp_port" "$next" || true
is "$(served)" "$next" "... and a new key and certificate in that 0710 directory are picked up by the watch"
is "$(stat -c '%U %a' "$(dirname "$sock")")" "postgres 750" "the socket directory it made now belongs to postgres"
install -m 0755 "$KTLS_SIDECAR" "$FX_DIR/ktls-sidecar-ctl" # the checkout may sit under a 0700 home
like "$(runuser -u postgres -- "$FX_DIR/ktls-sidecar-ctl" ctl --admin-socket "$sock" show info 2>&1)" 'version' \
    "postgres may use ctl"
fx_sidecar_stop grp || true
ok "the socket is removed when it stops" test ! -e "$sock"

# a config file only root may read (0600) under --user: the reload cannot re-read it,
# and the certificates rotate all the same (the settings read at startup stay)
printf 'idle-timeout = 0\n' >"$FX_DIR/root-only.conf" && chmod 0600 "$FX_DIR/root-only.conf"
ro_port="$(fx_free_port)"
fx_sidecar_start ro --listen "127.0.0.1:$ro_port" --backend "127.0.0.1:$FX_PGB_PORT" --io "$io" \
    --cert "$kdir/server.crt" --key "$kdir/server.key" --config "$FX_DIR/root-only.conf" \
    --admin-socket "$FX_DIR/ro.sock" --user postgres || BAIL_OUT "sidecar did not start"
like "$(cat "$(fx_sidecar_log ro)")" 'cannot read this file: reloads cannot use it" user="postgres" file="[^"]*root-only.conf"' \
    "a root-only config file under --user: a startup warning names it"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$FX_DIR/next3.key" \
    -out "$FX_DIR/next3.crt" -subj /CN=localhost -days 2 2>/dev/null || BAIL_OUT "next3 cert"
next3="$(openssl x509 -noout -serial -in "$FX_DIR/next3.crt" | cut -d= -f2)"
cp "$FX_DIR/next3.key" "$kdir/server.key" && cp "$FX_DIR/next3.crt" "$kdir/server.crt"
_fx_wait_until 10 serves "$ro_port" "$next3" || true
is "$(served "$ro_port")" "$next3" "... the watched rotation is served all the same"
like "$("$KTLS_SIDECAR" ctl --admin-socket "$FX_DIR/ro.sock" reload 2>&1)" \
    'configuration not re-read.*root-only.conf.*Permission denied.*certificates reloaded' \
    "... and a reload says the file was not re-read, and why"
fx_sidecar_stop ro || true

# started as that user already (a container's runAsUser with the same --user in its
# config): nothing to drop, so it runs, as nginx does, instead of failing with EPERM
as_port="$(fx_free_port)"
rc=0; out="$(runuser -u postgres -- timeout --preserve-status -s INT 3 "$FX_DIR/ktls-sidecar-ctl" run --listen "127.0.0.1:$as_port" \
    --admin-socket "" --cert "$kdir/server.crt" --key "$kdir/server.key" --user postgres 2>&1)" || rc=$?
like "$out" 'already running as the --user.*msg="listening"' "--user naming the user it already runs as: starts"
is "$rc" 0 "... and exits 0 at SIGINT"
port2="$(fx_free_port)"
rc=0; out="$(fx_with_timeout 10 "$KTLS_SIDECAR" run --listen "127.0.0.1:$port2" --admin-socket "" \
    --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" --user no-such-user-here 2>&1)" || rc=$?
isnt "$rc" 0 "an unknown --user refuses to start"
like "$out" 'no such user' "... and says so"

# key material never reaches the logs, not even at debug level with failures around
ks_start keys "$io" --log-level debug --client-ca "$FX_CERTS/ca.crt" --verify optional || BAIL_OUT "start"
fx_psql "$(ks_dsn)" -c 'select 1' >/dev/null
PGSSLMAXPROTOCOLVERSION=TLSv1.2 fx_psql "$(ks_dsn sslcert=$FX_CERTS/alice.crt sslkey=$FX_CERTS/alice.key)" -c 'select 1' >/dev/null
fx_psql "$(ks_dsn sslcert=$FX_CERTS/untrusted.crt sslkey=$FX_CERTS/untrusted.key)" -c 'select 1' >/dev/null 2>&1 || true
fx_sidecar_stop keys || true
leaks=0
for k in server.key alice.key untrusted.key; do
    while read -r line; do
        [[ "$line" == -----* || ${#line} -lt 16 ]] && continue
        grep -qF -- "${line:0:24}" "$(fx_sidecar_log keys)" "$(fx_sidecar_log priv)" && leaks=$((leaks + 1))
    done <"$FX_CERTS/$k"
done
# the key's PEM text given where a path belongs (a Secret put in the environment)
rc=0; out="$(KTLS_SIDECAR_KEY="$(cat "$FX_CERTS/server.key")" fx_with_timeout 10 "$KTLS_SIDECAR" run \
    --listen "127.0.0.1:$port2" --admin-socket "" --cert "$FX_CERTS/server.crt" 2>&1)" || rc=$?
is "$rc" 2 "PEM text in KTLS_SIDECAR_KEY: refused as a configuration error"
like "$out" 'key: expects a file path' "... saying the option wants a path"
while read -r line; do
    [[ "$line" == -----* || ${#line} -lt 16 ]] && continue
    grep -qF -- "${line:0:24}" <<<"$out" && leaks=$((leaks + 1))
done <"$FX_CERTS/server.key"
# an encrypted key: refused at once, also with a terminal, where OpenSSL would prompt
openssl pkey -in "$FX_CERTS/server.key" -aes256 -passout pass:secret -out "$FX_DIR/enc.key" || BAIL_OUT "enc key"
rc=0; out="$(fx_with_timeout 10 script -qfec "$(printf '%q ' "$KTLS_SIDECAR" run --listen "127.0.0.1:$port2" \
    --admin-socket "" --cert "$FX_CERTS/server.crt" --key "$FX_DIR/enc.key")" /dev/null </dev/null 2>&1)" || rc=$?
is "$rc" 1 "an encrypted key under a terminal: exit 1, no passphrase prompt waiting"
like "$out" 'is encrypted, and passphrases are not supported' "... saying the key is encrypted"
unlike "$out" 'pass phrase' "... and OpenSSL did not ask for one"
is "$leaks" 0 "no line of any private key's base64 appears in the logs"
ok "the logs are not empty (the check above looked at something)" test -s "$(fx_sidecar_log keys)"
done_testing
