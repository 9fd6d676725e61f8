# SPDX-License-Identifier: MIT
# tests/lib/fixture.sh: throwaway test fixtures for the ktls-sidecar integration
# tests: a private temp dir, free ports, a PostgreSQL 15 cluster, PgBouncer, an
# openssl-made PKI and ktls-sidecar processes, all torn down by an EXIT trap (and
# by a watchdog if the test is SIGKILLed). Sources tap.sh itself (for diag).
#
# Usage:   source "$(dirname "$0")/../lib/fixture.sh"; fx_init; fx_pg_start; ...
# Safe under `set -euo pipefail`; every function reports failure by returning
# non-zero (and printing "# ..." diagnostics), never by exiting.
#
# Environment knobs: KEEP_TMP=1 (keep $FX_DIR), KTLS_SIDECAR (binary under test,
# default $FX_REPO/build/ktls-sidecar), FX_PGBIN (/usr/lib/postgresql/15/bin),
# FX_PGBOUNCER (/usr/sbin/pgbouncer), FX_PORT_REG (/tmp/ktls-fx-ports),
# FX_PSQL_TIMEOUT (60).

[[ -n "${_FX_SH_LOADED:-}" ]] && return 0
_FX_SH_LOADED=1

# Debian's own tools first: a pyenv or virtualenv python3 shim on PATH can take
# seconds to start on a loaded host, inside timed checks. libpq's messages in
# English, and no libpq settings inherited from the caller's environment.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin${PATH:+:$PATH}"
export LC_ALL=C
for _fx_v in $(compgen -e | grep '^PG' || true); do unset "$_fx_v"; done
unset _fx_v

FX_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FX_REPO="$(cd "$FX_LIB_DIR/../.." && pwd)"
# shellcheck source=SCRIPTDIR/tap.sh
source "$FX_LIB_DIR/tap.sh"

: "${KTLS_SIDECAR:=$FX_REPO/build/ktls-sidecar}"
: "${FX_PGBIN:=/usr/lib/postgresql/15/bin}"
: "${FX_PGBOUNCER:=/usr/sbin/pgbouncer}"
: "${FX_PORT_REG:=/tmp/ktls-fx-ports}"
: "${FX_PSQL_TIMEOUT:=60}"
declare -gA FX_SIDECAR_PIDS=()
_FX_EXIT_HOOKS=()
_FX_INIT_PID=""

# ---------------------------------------------------------------- small helpers

# Milliseconds since the epoch (no fork).
_fx_now_ms() { local t="${EPOCHREALTIME/[.,]/}"; echo $((t / 1000)); }

# Poll "cmd args..." every 0.1 s until it succeeds (0) or SECS elapse (1).
_fx_wait_until() {
    local secs="$1"; shift
    local deadline=$(($(_fx_now_ms) + secs * 1000))
    until "$@"; do
        (($(_fx_now_ms) >= deadline)) && return 1
        sleep 0.1
    done
}

# Print the last N (default 40) lines of FILE as TAP diagnostics.
_fx_diag_file() { [[ -r "$1" ]] && diag "---- ${1} (tail) ----" "$(tail -n "${2:-40}" "$1")"; return 0; }

# Run a command as the postgres user from / (PostgreSQL refuses to run as root).
_fx_as_pg() { (cd / && runuser -u postgres -- "$@"); }

# True if PID exists and is not a zombie.
_fx_alive() {
    [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
    local st; st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    st="${st##*) }"; [[ "${st:0:1}" != Z ]]
}

# Kernel start time of PID (field 22 of /proc/PID/stat), empty if unknown.
# shellcheck disable=SC2086  # split the numeric stat fields on purpose
_fx_pid_start() { local st; st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0; st="${st##*) }"; set -- $st; echo "${20:-}"; }

# Print PID and all its descendants (children first is not guaranteed).
_fx_tree() { ps -e -o pid=,ppid= 2>/dev/null | awk -v root="$1" '{p[$1]=$2} END{n=1; s[1]=root; print root; while(n){c=s[n--]; for(k in p) if(p[k]==c){print k; s[++n]=k}}}'; }

# True if none of the given pids is alive.
_fx_all_dead() { local q; for q in "$@"; do _fx_alive "$q" && return 1; done; return 0; }

# TERM every given pid (and descendants), wait up to SECS, then KILL survivors.
_fx_kill_pids() {
    local secs="$1" p; shift
    local all=()
    for p in "$@"; do _fx_alive "$p" && mapfile -t -O "${#all[@]}" all < <(_fx_tree "$p"); done
    ((${#all[@]})) || return 0
    kill -TERM "${all[@]}" 2>/dev/null || true
    _fx_wait_until "$secs" _fx_all_dead "${all[@]}" && return 0
    kill -KILL "${all[@]}" 2>/dev/null || true
    _fx_wait_until 2 _fx_all_dead "${all[@]}" || true
    return 0
}

# Fail with a diagnostic unless fx_init ran.
_fx_need_init() { [[ -n "${FX_DIR:-}" && -d "$FX_DIR" ]] && return 0; diag "fixture: call fx_init first"; return 1; }

# ------------------------------------------------------------- init / teardown

# Create $FX_DIR, install the EXIT/INT/TERM/HUP traps and the SIGKILL watchdog.
fx_init() {
    [[ "$_FX_INIT_PID" == "$BASHPID" && -d "${FX_DIR:-}" ]] && return 0
    unset FX_PG_PORT FX_PG_SOCKDIR FX_PG_DATA FX_PGB_PORT FX_PGB_SOCKDIR FX_PGB_PID FX_CERTS _FX_PGB_FIXED_PORT
    FX_SIDECAR_PIDS=()
    FX_DIR="$(mktemp -d /tmp/ktls-fx.XXXXXX)" || { diag "fx_init: mktemp failed"; return 1; }
    chmod 0755 "$FX_DIR" && : >"$FX_DIR/pids" && : >"$FX_DIR/ports" || return 1
    export FX_DIR FX_REPO KTLS_SIDECAR
    _FX_INIT_PID=$BASHPID
    local prev; prev="$(trap -p EXIT)"; prev="${prev#trap -- }"; prev="${prev% EXIT}"
    _FX_PREV_EXIT_TRAP=""; [[ -n "$prev" ]] && eval "_FX_PREV_EXIT_TRAP=$prev"
    trap '_fx_exit_trap' EXIT
    trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
    _fx_watchdog_start
}

# Register a shell command to run (via eval) at exit, before services are stopped.
fx_on_exit() { _FX_EXIT_HOOKS+=("$*"); }

# Register a background PID to be TERM/KILLed (with descendants) at exit.
fx_register_pid() { _fx_need_init || return 1; echo "${2:-pid} $1 $(_fx_pid_start "$1")" >>"$FX_DIR/pids"; }

# EXIT trap body: run hooks, tear everything down, run any pre-existing EXIT trap.
_fx_exit_trap() {
    local rc=$? h
    set +e
    [[ "$_FX_INIT_PID" == "$BASHPID" ]] || return "$rc"   # inherited by a subshell: not ours
    for h in "${_FX_EXIT_HOOKS[@]}"; do eval "$h"; done
    _fx_teardown "${FX_DIR:-}"
    [[ -n "${_FX_PREV_EXIT_TRAP:-}" ]] && eval "$_FX_PREV_EXIT_TRAP"
    return "$rc"
}

# Start a detached watchdog that tears $FX_DIR down if this shell dies without its trap.
# shellcheck disable=SC2016  # the script is expanded by the watchdog bash
_fx_watchdog_start() {
    local me=$BASHPID   # expand here: words of an async command are expanded in the child
    setsid bash -c 'echo $$ >"$3/watchdog.pid"; source "$2" || exit 1
        while _fx_alive "$1"; do sleep 1; done; _fx_teardown "$3" watchdog' \
        fx-watchdog "$me" "$FX_LIB_DIR/fixture.sh" "$FX_DIR" </dev/null >/dev/null 2>&1 &
    _FX_WATCHDOG_PID=$!
}

# Stop everything recorded under DIR (sidecars/pids, pgbouncer, postgres), free ports, rm DIR.
_fx_teardown() {
    local dir="$1" who="${2:-trap}" _kind pid start pids=() w
    [[ -n "$dir" && -d "$dir" ]] || return 0
    if [[ -f "$dir/pids" ]]; then
        while read -r _kind pid start; do
            [[ -n "$pid" ]] && _fx_alive "$pid" && [[ -z "$start" || "$(_fx_pid_start "$pid")" == "$start" ]] && pids+=("$pid")
        done <"$dir/pids"
        _fx_kill_pids 5 "${pids[@]}"
    fi
    _fx_pgb_kill "$dir"
    _fx_pg_kill "$dir"
    _fx_ports_release "$dir"
    if [[ "$who" != watchdog ]]; then
        w="$(cat "$dir/watchdog.pid" 2>/dev/null)"
        for pid in "$w" "${_FX_WATCHDOG_PID:-}"; do
            if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
        done
    fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        diag "KEEP_TMP=1: kept $dir"
    else
        rm -rf "$dir" 2>/dev/null || { sleep 0.2; rm -rf "$dir"; }
    fi
    return 0
}

# --------------------------------------------------------------------- ports

# True if any TCP socket (any state, any family) uses local port PORT.
_fx_port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]]
    else
        ! /usr/bin/python3 -c 'import socket,sys
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(fam)
    try: s.bind((host, int(sys.argv[1])))
    except OSError as e:
        if fam == socket.AF_INET or e.errno != 99: sys.exit(1)
    finally: s.close()' "$1"
    fi
}

# Atomically reserve PORT for $FX_DIR in $FX_PORT_REG (mkdir lock); stale owners are reclaimed.
_fx_port_reserve() {
    local r="$FX_PORT_REG/$1" owner
    [[ -d "$FX_PORT_REG" ]] || { mkdir -p "$FX_PORT_REG" 2>/dev/null && chmod 1777 "$FX_PORT_REG"; }
    if ! mkdir "$r" 2>/dev/null; then
        owner="$(cat "$r/owner" 2>/dev/null)"
        [[ -n "$owner" && -d "$owner" ]] && return 1                                   # live owner
        [[ -z "$owner" && -n "$(find "$r" -maxdepth 0 -mmin -1 2>/dev/null)" ]] && return 1 # being created
        rm -rf "$r" && mkdir "$r" 2>/dev/null || return 1
    fi
    echo "$FX_DIR" >"$r/owner" && echo "$1" >>"$FX_DIR/ports"
}

# Drop the port reservations owned by DIR.
_fx_ports_release() {
    local p
    [[ -f "$1/ports" ]] || return 0
    while read -r p; do
        [[ -n "$p" && "$(cat "$FX_PORT_REG/$p/owner" 2>/dev/null)" == "$1" ]] && rm -rf "${FX_PORT_REG:?}/$p"
    done <"$1/ports"
    return 0
}

# Print a currently unused TCP port, outside the kernel's ephemeral range, reserved for this test.
fx_free_port() {
    local lo=32768 hi=60999 a b i p
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    a=20000 b=$((lo - 1))
    ((b - a < 1000)) && { a=$((hi + 1)); b=65535; }
    ((b - a < 1000)) && { a=1025; b=65535; }
    for ((i = 0; i < 500; i++)); do
        p=$((a + ${SRANDOM:-$RANDOM$RANDOM} % (b - a + 1)))
        _fx_port_in_use "$p" && continue
        [[ -n "${FX_DIR:-}" && -d "${FX_DIR:-}" ]] && { _fx_port_reserve "$p" || continue; }
        echo "$p"
        return 0
    done
    diag "fx_free_port: no free port found in $a-$b"
    return 1
}

# -------------------------------------------------------------- misc wrappers

# Run cmd with a SECS timeout; works for functions too (run in a subshell). Returns 124 on timeout.
fx_with_timeout() {
    local secs="$1"; shift
    if [[ "$(type -t "$1")" == file ]]; then
        timeout -k 5 "$secs" "$@"
        return
    fi
    ("$@") <&0 &
    local pid=$! rc=0
    if ! _fx_wait_until "$secs" eval '! _fx_alive '"$pid"; then
        _fx_kill_pids 2 "$pid"
        { wait "$pid"; } 2>/dev/null || true
        return 124
    fi
    { wait "$pid"; } 2>/dev/null || rc=$?
    return "$rc"
}

# psql with timeouts, no psqlrc, unaligned tuples-only quiet output, ON_ERROR_STOP and no password prompt.
fx_psql() {
    PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}" timeout -k 5 "$FX_PSQL_TIMEOUT" \
        "$FX_PGBIN/psql" -X -q -A -t -w -v ON_ERROR_STOP=1 "$@"
}

# ----------------------------------------------------------------- postgres

# initdb + start a throwaway PostgreSQL on 127.0.0.1:free port; exports FX_PG_PORT, FX_PG_SOCKDIR, FX_PG_DATA.
fx_pg_start() {
    _fx_need_init || return 1
    local d="$FX_DIR/pg" port
    mkdir -p "$d/sock" && chown -R postgres: "$d" && chmod 0755 "$d" "$d/sock" || return 1
    port="$(fx_free_port)" || return 1
    if [[ -n "${FX_PG_TEMPLATE_TAR:-}" ]]; then
        # a cluster made by tests/vm/pg-template.sh: initdb is 15x slower in the TCG VM
        _fx_as_pg tar -xf "$FX_PG_TEMPLATE_TAR" -C "$d" || { diag "cannot unpack $FX_PG_TEMPLATE_TAR"; return 1; }
    else
        _fx_as_pg timeout 60 "$FX_PGBIN/initdb" -D "$d/data" --auth=trust --no-sync --locale=C \
            --encoding=UTF8 -U postgres >"$d/initdb.log" 2>&1 || { diag "initdb failed"; _fx_diag_file "$d/initdb.log"; return 1; }
    fi
    cat >>"$d/data/postgresql.conf" <<EOF || return 1

# --- ktls-sidecar test fixture ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$d/sock'
max_connections = 200
shared_buffers = 32MB
huge_pages = off
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
autovacuum = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    _fx_as_pg timeout 45 "$FX_PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 30 -s start >"$d/pg_ctl.log" 2>&1 ||
        { diag "pg_ctl start failed"; _fx_diag_file "$d/pg_ctl.log"; _fx_diag_file "$d/postgres.log"; return 1; }
    export FX_PG_PORT="$port" FX_PG_SOCKDIR="$d/sock" FX_PG_DATA="$d/data"
    _fx_wait_until 30 "$FX_PGBIN/pg_isready" -q -t 2 -h "$FX_PG_SOCKDIR" -p "$port" ||
        { diag "postgres not ready after 30 s"; _fx_diag_file "$d/postgres.log"; return 1; }
    [[ -n "${FX_PG_TEMPLATE_TAR:-}" ]] && return 0 # the template has them
    fx_psql -h "$FX_PG_SOCKDIR" -p "$port" -U postgres -d postgres \
        -c "CREATE ROLE app LOGIN" -c "CREATE DATABASE app OWNER app" || { diag "creating role/db app failed"; return 1; }
}

# Stop the test PostgreSQL (fast mode).
fx_pg_stop() {
    [[ -n "${FX_PG_DATA:-}" && -f "$FX_PG_DATA/postmaster.pid" ]] || return 0
    _fx_as_pg timeout 30 "$FX_PGBIN/pg_ctl" -D "$FX_PG_DATA" -m fast -w -t 20 -s stop
}

# Immediate-stop the postgres of DIR (teardown); SIGKILL the postmaster if it lingers.
_fx_pg_kill() {
    local data="$1/pg/data" pid
    [[ -f "$data/postmaster.pid" ]] || return 0
    pid="$(head -n1 "$data/postmaster.pid" 2>/dev/null)"
    _fx_as_pg timeout 15 "$FX_PGBIN/pg_ctl" -D "$data" -m immediate -w -t 10 -s stop >/dev/null 2>&1 || true
    _fx_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres ]] && _fx_kill_pids 2 "$pid"
    return 0
}

# ---------------------------------------------------------------- pgbouncer

# Write pgbouncer.ini/userlist.txt for PORT and pool MODE into DIR.
_fx_pgb_config() {
    local dir="$1" port="$2" mode="$3"
    printf '"app" ""\n"postgres" ""\n' >"$dir/userlist.txt" || return 1
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$FX_PG_PORT dbname=app
postgres = host=127.0.0.1 port=$FX_PG_PORT dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
stats_users = postgres
pool_mode = $mode
max_client_conn = 2000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
server_tls_sslmode = disable
client_tls_sslmode = disable
server_login_retry = 1
EOF
}

# True if pgbouncer on PORT answers "select 1" as app.
_fx_pgb_ready() {
    [[ "$(PGCONNECT_TIMEOUT=2 timeout 5 "$FX_PGBIN/psql" -X -q -A -t -w -h 127.0.0.1 -p "$1" -U app -d app -c 'select 1' 2>/dev/null)" == 1 ]]
}

# Wait predicate: pgbouncer on PORT is ready, or its pid file (in DIR) names a dead process.
_fx_pgb_settled() {
    local pid; pid="$(cat "$2/pgbouncer.pid" 2>/dev/null)"
    [[ -n "$pid" ]] && ! _fx_alive "$pid" && return 0
    _fx_pgb_ready "$1"
}

# Start PgBouncer [pool_mode, default transaction] on 127.0.0.1 + unix socket; exports FX_PGB_PORT, FX_PGB_SOCKDIR, FX_PGB_PID.
fx_pgbouncer_start() {
    _fx_need_init || return 1
    [[ -n "${FX_PG_PORT:-}" ]] || { diag "fx_pgbouncer_start: run fx_pg_start first"; return 1; }
    local mode="${1:-${_FX_PGB_MODE:-transaction}}" d="$FX_DIR/pgb" port pid
    mkdir -p "$d" && chown postgres: "$d" && chmod 0755 "$d" || return 1
    port="${_FX_PGB_FIXED_PORT:-}"
    [[ -n "$port" ]] || port="$(fx_free_port)" || return 1
    _fx_pgb_config "$d" "$port" "$mode" || return 1
    (ulimit -n 8192 2>/dev/null; _fx_as_pg timeout 15 "$FX_PGBOUNCER" -d "$d/pgbouncer.ini") >>"$d/start.log" 2>&1 ||
        { diag "pgbouncer failed to start"; _fx_diag_file "$d/start.log"; _fx_diag_file "$d/pgbouncer.log"; return 1; }
    _fx_wait_until 30 _fx_pgb_settled "$port" "$d" || true
    if ! _fx_pgb_ready "$port"; then
        diag "pgbouncer not ready on port $port after 30 s"; _fx_diag_file "$d/pgbouncer.log"; return 1
    fi
    pid="$(cat "$d/pgbouncer.pid" 2>/dev/null)"
    export FX_PGB_PORT="$port" FX_PGB_SOCKDIR="$d" FX_PGB_PID="$pid"
    _FX_PGB_FIXED_PORT="$port" _FX_PGB_MODE="$mode"
}

# Stop PgBouncer (SIGTERM, 5 s, then SIGKILL) and remove its pid/socket files.
fx_pgbouncer_stop() { _fx_need_init || return 1; _fx_pgb_kill "$FX_DIR"; unset FX_PGB_PID; }

# Restart PgBouncer on the same port [with a new pool_mode].
fx_pgbouncer_restart() { fx_pgbouncer_stop && fx_pgbouncer_start "${1:-}"; }

# Kill the pgbouncer of DIR (pid file checked against /proc comm) and clean its files.
_fx_pgb_kill() {
    local d="$1/pgb" pid
    pid="$(cat "$d/pgbouncer.pid" 2>/dev/null)"
    [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == pgbouncer ]] && _fx_kill_pids 5 "$pid"
    rm -f "$d/pgbouncer.pid" "$d"/.s.PGSQL.* 2>/dev/null
    return 0
}

# Run SQL on the PgBouncer admin console (database pgbouncer, user postgres).
fx_pgb_admin() { fx_psql -h 127.0.0.1 -p "$FX_PGB_PORT" -U postgres -d pgbouncer -c "$*"; }

# -------------------------------------------------------------- certificates

# Write the openssl config (req DN + extension sections + `openssl ca` section) used by fx_certs.
_fx_certs_cnf() {
    cat >"$1/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[wronghost_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:wrong.example.com
authorityKeyIdentifier = keyid
[alice_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:spiffe://example.org/ns/app/sa/alice, DNS:alice.app.example.org
authorityKeyIdentifier = keyid
[mallory_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:spiffe://evil.org/x
authorityKeyIdentifier = keyid
[ca]
default_ca = ca_expired
[ca_expired]
database = $1/.ca/index.txt
new_certs_dir = $1/.ca
serial = $1/.ca/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
commonName = supplied
EOF
}

# Self-signed EC P-256 CA: _fx_mk_ca DIR NAME CN.
_fx_mk_ca() {
    openssl req -config "$1/openssl.cnf" -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1/$2.key" -out "$1/$2.crt" -days 3650 -subj "/CN=$3" -extensions ca_ext
}

# Leaf cert signed by CA: _fx_mk_leaf DIR NAME CN EXT_SECTION CA [rsa]; a CN that
# starts with / is the whole subject.
_fx_mk_leaf() {
    local key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) subj="/CN=$3"
    [[ "${6:-}" == rsa ]] && key=(-newkey rsa:2048)
    [[ "$3" == /* ]] && subj="$3"
    openssl req -config "$1/openssl.cnf" -new -x509 "${key[@]}" -nodes -keyout "$1/$2.key" -out "$1/$2.crt" \
        -days 825 -subj "$subj" -CA "$1/$5.crt" -CAkey "$1/$5.key" -extensions "$4"
}

# Generate the test PKI into DIR (default $FX_DIR/certs); exports FX_CERTS. See the file list below.
#   ca.crt/key            trusted test CA (EC P-256)
#   server.crt/key        RSA-2048, CN=localhost, SAN DNS:localhost,IP:127.0.0.1
#   server-ec.crt/key     same names, EC P-256
#   wronghost.crt/key     CN=wrong.example.com, SAN DNS:wrong.example.com
#   alice.crt/key         client, CN=alice, SAN URI:spiffe://example.org/ns/app/sa/alice, DNS:alice.app.example.org
#   mallory.crt/key       client, CN=mallory, SAN URI:spiffe://evil.org/x
#   appuser.crt/key       client, CN=app (the tests' PostgreSQL user), SANs as alice's
#   corp.crt/key          client, subject C=US, O=Example Corp, OU=payments, CN=corp; DNS SAN
#                         wrong.example.com (RFC 2253: CN=corp,OU=payments,O=Example Corp,C=US)
#   expired.crt/key       like alice, but valid from 2 days ago to 1 day ago
#   untrusted-ca.crt/key  a second CA nobody trusts
#   untrusted.crt/key     like alice, but signed by untrusted-ca
fx_certs() {
    local dir="${1:-}" start end
    if [[ -z "$dir" ]]; then _fx_need_init || return 1; dir="$FX_DIR/certs"; fi
    if [[ -n "${FX_CERTS_TEMPLATE:-}" && -f "$FX_CERTS_TEMPLATE/ca.crt" ]]; then
        # made on the host by tests/vm/ktls.t: RSA key generation crawls under TCG
        mkdir -p "$dir" && cp -a "$FX_CERTS_TEMPLATE/." "$dir/" && export FX_CERTS="$dir"
        return
    fi
    mkdir -p "$dir/.ca" && chmod 0755 "$dir" || return 1
    : >"$dir/.ca/index.txt" && echo 1000 >"$dir/.ca/serial" && _fx_certs_cnf "$dir" || return 1
    start="$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)" end="$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)"
    {
        _fx_mk_ca "$dir" ca "ktls-sidecar test CA" &&
        _fx_mk_ca "$dir" untrusted-ca "untrusted test CA" &&
        _fx_mk_leaf "$dir" server localhost server_ext ca rsa &&
        _fx_mk_leaf "$dir" server-ec localhost server_ext ca &&
        _fx_mk_leaf "$dir" wronghost wrong.example.com wronghost_ext ca &&
        _fx_mk_leaf "$dir" alice alice alice_ext ca &&
        _fx_mk_leaf "$dir" mallory mallory mallory_ext ca &&
        _fx_mk_leaf "$dir" appuser app alice_ext ca &&
        _fx_mk_leaf "$dir" corp "/C=US/O=Example Corp/OU=payments/CN=corp" wronghost_ext ca &&
        _fx_mk_leaf "$dir" untrusted alice alice_ext untrusted-ca &&
        openssl req -config "$dir/openssl.cnf" -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$dir/expired.key" -out "$dir/.ca/expired.csr" -subj "/CN=alice" &&
        openssl ca -batch -config "$dir/openssl.cnf" -cert "$dir/ca.crt" -keyfile "$dir/ca.key" \
            -in "$dir/.ca/expired.csr" -out "$dir/expired.crt" -notext -startdate "$start" -enddate "$end" \
            -extfile "$dir/openssl.cnf" -extensions alice_ext
    } >>"$dir/openssl.log" 2>&1 || { diag "fx_certs: openssl failed"; _fx_diag_file "$dir/openssl.log"; return 1; }
    chmod 0600 "$dir"/*.key && chmod 0644 "$dir"/*.crt || return 1
    export FX_CERTS="$dir"
}

# openssl ca with the test CA of $FX_CERTS: fx_ca ARGS... (output to its openssl.log).
fx_ca() {
    openssl ca -batch -config "$FX_CERTS/openssl.cnf" -cert "$FX_CERTS/ca.crt" -keyfile "$FX_CERTS/ca.key" "$@" \
        >>"$FX_CERTS/openssl.log" 2>&1
}

# carol.crt/key: a client like alice, revoked; $FX_CERTS/crl/clients.crl lists her for 7 days.
fx_certs_revoked() {
    { _fx_mk_leaf "$FX_CERTS" carol carol alice_ext ca >>"$FX_CERTS/openssl.log" 2>&1 &&
        fx_ca -revoke "$FX_CERTS/carol.crt" && mkdir -p "$FX_CERTS/crl" &&
        fx_ca -gencrl -crldays 7 -out "$FX_CERTS/crl/clients.crl"; } ||
        { diag "fx_certs_revoked: openssl failed"; _fx_diag_file "$FX_CERTS/openssl.log"; return 1; }
}

# ---------------------------------------------------------------- sidecar

# Variable-name-safe form of a sidecar NAME.
_fx_name() { local n="${1//[^A-Za-z0-9_]/_}"; echo "$n"; }

# Parse "--listen HOST:PORT" / "--listen=HOST:PORT" from args; prints "HOST PORT" (IPv6 in brackets ok).
_fx_listen_arg() {
    local a addr=""
    while (($#)); do
        case "$1" in
            --listen) addr="${2:-}"; shift ;;
            --listen=*) addr="${1#--listen=}" ;;
        esac
        shift
    done
    [[ -n "$addr" ]] || return 1
    a="${addr##*:}"; addr="${addr%:*}"; addr="${addr#[}"; addr="${addr%]}"
    case "$addr" in "" | 0.0.0.0 | '*') addr=127.0.0.1 ;; ::) addr=::1 ;; esac
    echo "$addr $a"
}

# shellcheck disable=SC2016
# True if something listens on TCP PORT (checked without connecting; /dev/tcp fallback).
_fx_listening() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Hltn "sport = :$2" 2>/dev/null)" ]]
    else
        timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
    fi
}

# Wait predicate: PID died, or something listens on HOST PORT.
# Up: listening, and (the real sidecar logs "listening" at info level once its admin
# socket, privilege drop and workers are done) past its startup; or dead. $5=0, or no
# log file $4 (another program: the bench's stunnel): the port alone tells.
_fx_sc_up() {
    _fx_alive "$1" || return 0
    _fx_listening "$2" "$3" || return 1
    [[ "${5:-1}" == 0 || -z "${4:-}" ]] || grep -qE 'msg="listening"|"msg":"listening"|listening on' "$4" 2>/dev/null
}

# Start "$KTLS_SIDECAR run ARGS..." as NAME, log to $FX_DIR/NAME.log, wait (10 s) for its --listen port.
# Sets FX_SIDECAR_PIDS[NAME] and FX_SIDECAR_PID_<NAME>.
fx_sidecar_start() {
    _fx_need_init || return 1
    local name="$1" log="$FX_DIR/$1.log" hp host port pid
    shift
    [[ -x "$KTLS_SIDECAR" ]] || { diag "fx_sidecar_start: $KTLS_SIDECAR is not executable (build it first)"; return 1; }
    hp="$(_fx_listen_arg "$@")" || { diag "fx_sidecar_start: no --listen HOST:PORT in args"; return 1; }
    read -r host port <<<"$hp"
    "$KTLS_SIDECAR" run "$@" >"$log" 2>&1 </dev/null &
    pid=$!
    FX_SIDECAR_PIDS[$name]=$pid
    printf -v "FX_SIDECAR_PID_$(_fx_name "$name")" %s "$pid"
    export "FX_SIDECAR_PID_$(_fx_name "$name")"
    echo "sidecar:$name $pid $(_fx_pid_start "$pid")" >>"$FX_DIR/pids"
    local logged=1 a prev=""
    [[ "${KTLS_SIDECAR_LOG_LEVEL:-}" =~ ^(warn|error)$ ]] && logged=0
    for a in "$@"; do
        [[ "$prev" == --log-level && "$a" =~ ^(warn|error)$ || "$a" =~ ^--log-level=(warn|error)$ ]] && logged=0
        prev="$a"
    done
    _fx_wait_until 10 _fx_sc_up "$pid" "$host" "$port" "$log" "$logged" || true
    if ! _fx_alive "$pid"; then
        local rc=0; { wait "$pid"; } 2>/dev/null || rc=$?
        diag "sidecar '$name' exited early (status $rc); log $log:"; _fx_diag_file "$log" 200
        return 1
    fi
    if ! _fx_listening "$host" "$port"; then
        diag "sidecar '$name' not listening on $host:$port after 10 s; log $log:"; _fx_diag_file "$log" 200
        _fx_kill_pids 2 "$pid"
        return 1
    fi
}

# Stop sidecar NAME: SIGTERM (or SIG), wait 5 s, then SIGKILL; returns its exit status (128+n if signalled).
fx_sidecar_stop() {
    local name="$1" sig="${2:-TERM}" pid rc=0
    pid="${FX_SIDECAR_PIDS[$name]:-}"
    [[ -n "$pid" ]] || { diag "fx_sidecar_stop: unknown sidecar '$name'"; return 1; }
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! _fx_wait_until 5 eval '! _fx_alive '"$pid"; then
        diag "sidecar '$name' ignored SIG$sig for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        _fx_wait_until 2 eval '! _fx_alive '"$pid" || true
    fi
    { wait "$pid"; } 2>/dev/null || rc=$?
    ((rc == 127)) && rc=0   # not our child (started in another shell): status unknown
    unset "FX_SIDECAR_PIDS[$name]"
    return "$rc"
}

# Print the log file path of sidecar NAME.
fx_sidecar_log() { echo "$FX_DIR/$1.log"; }
