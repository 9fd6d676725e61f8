#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build a ready PostgreSQL 15 cluster (role and database "app", pgbench tables)
# on the host and pack it as a tar for the VM suite: initdb and pgbench -i are
# CPU-bound and about 15x slower under TCG. Usage: pg-template.sh OUT.tar
set -euo pipefail
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/lib/fixture.sh
source "$here/../lib/fixture.sh"
fx_init >/dev/null
fx_pg_start >/dev/null
"$FX_PGBIN/pgbench" -q -i -s 1 -U app -h "$FX_PG_SOCKDIR" -p "$FX_PG_PORT" app >/dev/null 2>&1
fx_pg_stop >/dev/null
rm -f "$FX_PG_DATA/postmaster.pid" "$FX_PG_DATA/postmaster.opts"
mkdir -p "$(dirname "$out")"
tar -cf "$out.tmp" -C "$FX_DIR/pg" data
mv "$out.tmp" "$out"
chmod 0644 "$out"
