#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs tests/vm/ktls-suite.sh inside a VM booted with Debian's kernel (which has
# the tls module), because this machine's kernel has no CONFIG_TLS. Its TAP
# passes straight through. SKIP when qemu or the kernel package is unavailable.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/tap.sh
: "${KTLS_SIDECAR:=$PWD/build/ktls-sidecar}"
export KTLS_SIDECAR
[[ -x "$KTLS_SIDECAR" ]] || BAIL_OUT "build the sidecar first ($KTLS_SIDECAR)"
rc=0; why="$(tests/vm/build.sh 2>&1 >/dev/null)" || rc=$?
((rc == 77)) && skip_all "VM unavailable: $(tail -1 <<<"$why")"
((rc == 0)) || BAIL_OUT "tests/vm/build.sh failed: $why"
tests/vm/pg-template.sh build/vm/pgdata.tar || BAIL_OUT "cannot build the PostgreSQL template"
rm -rf build/vm/certs
(source tests/lib/fixture.sh && fx_certs "$PWD/build/vm/certs" >/dev/null) || BAIL_OUT "cannot make certificates"
rc=0
tests/vm/run.sh --timeout "${KTLS_VM_SUITE_TIMEOUT:-1500}" --mem 2048 \
    --env "FX_PG_TEMPLATE_TAR=$PWD/build/vm/pgdata.tar" --env "FX_CERTS_TEMPLATE=$PWD/build/vm/certs" \
    -- bash tests/vm/ktls-suite.sh || rc=$?
((rc == 77)) && skip_all "VM could not start"
exit "$rc"
