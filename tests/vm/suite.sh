#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one inner suite (a TAP script under tests/vm/) inside the kTLS VM, with
# the PostgreSQL template and certificates prepared on the host, and passes its
# TAP straight through. SKIP when qemu or the kernel package is unavailable.
# usage: tests/vm/suite.sh SUITE.sh   (KTLS_VM_KERNEL picks the kernel: see build.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/tap.sh
suite="${1:?usage: suite.sh SUITE.sh}"
: "${KTLS_SIDECAR:=$PWD/build/ktls-sidecar}"
export KTLS_SIDECAR
[[ -x "$KTLS_SIDECAR" ]] || BAIL_OUT "build the sidecar first ($KTLS_SIDECAR)"
rc=0; why="$(tests/vm/build.sh 2>&1 >/dev/null)" || rc=$?
((rc == 77)) && skip_all "VM unavailable: $(tail -1 <<<"$why")"
((rc == 0)) || BAIL_OUT "tests/vm/build.sh failed: $why"
tests/vm/pg-template.sh build/vm/pgdata.tar || BAIL_OUT "cannot build the PostgreSQL template"
rm -rf build/vm/certs
(source tests/lib/fixture.sh && fx_certs "$PWD/build/vm/certs" >/dev/null) || BAIL_OUT "cannot make certificates"
# run.sh exits 125 when the VM itself failed (e.g. a rare early-boot oops of the
# 7.x kernel under TCG): boot once more before calling it a failure.
for attempt in 1 2; do
    rc=0
    tests/vm/run.sh --timeout "${KTLS_VM_SUITE_TIMEOUT:-1500}" --mem 2048 \
        --env "FX_PG_TEMPLATE_TAR=$PWD/build/vm/pgdata.tar" --env "FX_CERTS_TEMPLATE=$PWD/build/vm/certs" \
        --env "FX_PSQL_TIMEOUT=${FX_PSQL_TIMEOUT:-300}" \
        -- bash "$suite" || rc=$?
    ((rc == 125 && attempt == 1)) || break
    echo "# the VM failed (exit 125); booting it once more" >&2
done
((rc == 77)) && skip_all "VM could not start"
exit "$rc"
