#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# 100 MB COPY TO STDOUT and COPY FROM STDIN through the sidecar, in each io
# mode, compared byte for byte (SHA-256) with the same data read directly.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
MB="${TEST_COPY_MB:-100}"
direct="host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app"

# ~MB megabytes of text rows (base64: no tab or backslash to escape)
src="$FX_DIR/copy-src.txt"
head -c $((MB * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 1000 >"$src"
want="$(sha256sum <"$src" | cut -d' ' -f1)"
bytes=$(stat -c %s "$src")
fx_psql "$direct" -c 'create table blob_src(line text); create table blob_in(line text)' >/dev/null
fx_psql "$direct" -c "\\copy blob_src from '$src'" >/dev/null
is "$(fx_psql "$direct" -c 'copy blob_src to stdout' | sha256sum | cut -d' ' -f1)" "$want" \
    "reference: direct COPY reproduces the $bytes-byte source"

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "c-$io" "$io" || BAIL_OUT "sidecar did not start"
    t0=$(date +%s%N)
    got="$(fx_psql "$(ks_dsn)" -c 'copy blob_src to stdout' | sha256sum | cut -d' ' -f1)"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    is "$got" "$want" "$io: ${MB} MB COPY TO STDOUT is byte-exact through TLS"
    note "$io: COPY TO STDOUT ${bytes} bytes in ${ms} ms"

    fx_psql "$direct" -c 'truncate blob_in' >/dev/null
    t0=$(date +%s%N)
    ok "$io: ${MB} MB COPY FROM STDIN through TLS succeeds" \
        fx_psql "$(ks_dsn)" -c 'copy blob_in from stdin' <"$src"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    note "$io: COPY FROM STDIN ${bytes} bytes in ${ms} ms"
    is "$(fx_psql "$direct" -c 'copy blob_in to stdout' | sha256sum | cut -d' ' -f1)" "$want" \
        "$io: what arrived in PostgreSQL is byte-exact"
    fx_sidecar_stop "c-$io" || true
    ks_check_log "c-$io"
done
done_testing
