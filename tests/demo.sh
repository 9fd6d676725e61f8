#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make demo`: a throwaway PostgreSQL 15 + PgBouncer, ktls-sidecar in front with
# a generated certificate, one psql session through TLS, the admin stats, and
# cleanup. Everything lives under a temporary directory and is removed on exit.
set -euo pipefail
source "$(dirname "$0")/lib/fixture.sh"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

fx_init
step "Generating a CA and a server certificate (CN=localhost) in $FX_DIR/certs"
fx_certs >/dev/null
step "Starting a throwaway PostgreSQL 15 and PgBouncer (transaction pooling)"
fx_pg_start
fx_pgbouncer_start
echo "PostgreSQL on 127.0.0.1:$FX_PG_PORT, PgBouncer on 127.0.0.1:$FX_PGB_PORT"

port="$(fx_free_port)"
admin="$FX_DIR/admin.sock"
args=(--listen "127.0.0.1:$port" --backend "127.0.0.1:$FX_PGB_PORT"
    --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" --admin-socket "$admin")
step "Testing the configuration first (nothing is bound)"
echo "\$ ktls-sidecar check ${args[*]}"
"$KTLS_SIDECAR" check "${args[@]}" --log-level error
step "Starting ktls-sidecar on 127.0.0.1:$port in front of PgBouncer"
echo "\$ ktls-sidecar run ${args[*]}"
fx_sidecar_start demo "${args[@]}"
cat "$(fx_sidecar_log demo)"

step "psql through TLS (sslmode=verify-full, checked against the demo CA)"
dsn="host=localhost port=$port user=app dbname=app sslmode=verify-full sslrootcert=$FX_CERTS/ca.crt"
echo "\$ psql \"$dsn\""
timeout 30 psql -X "$dsn" <<'SQL'
\conninfo
select 'hello through ktls-sidecar' as greeting, now() as at;
select count(*) as rows_generated from generate_series(1, 100000);
SQL

step "Admin socket: ktls-sidecar ctl show stats"
"$KTLS_SIDECAR" ctl --admin-socket "$admin" show stats
step "Admin socket: ktls-sidecar ctl show info"
"$KTLS_SIDECAR" ctl --admin-socket "$admin" show info

step "Stopping (SIGTERM) and cleaning up"
fx_sidecar_stop demo
echo "sidecar exited 0; the temporary cluster is removed on exit."
