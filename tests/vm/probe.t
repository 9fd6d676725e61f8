#!/bin/bash
# SPDX-License-Identifier: MIT
# TAP test: boots the kTLS test VM once, runs tests/vm/cache/ktls_probe inside
# it and checks /proc/net/tls_stat afterwards.  Also runs the probe on the host
# and reports (as a diagnostic) whether the host kernel has kTLS.
# Run from the repository root: prove -v tests/vm/probe.t
# With KTLS_VM_KERNEL=rekey it checks the newer kernel, and that its tls_stat
# has the rekey counters.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd -- "$root"

diag() { sed 's/^/# /'; }

# Build (or check) the VM; exit status 77 means "cannot run here".
rc=0
out=$(tests/vm/build.sh 2>&1) || rc=$?
if ((rc == 77)); then
	echo "1..0 # SKIP $(tail -n 1 <<<"$out" | sed 's/^[^:]*: SKIP: //')"
	exit 0
elif ((rc != 0)); then
	echo "Bail out! tests/vm/build.sh failed (exit $rc)"
	diag <<<"$out"
	exit 1
fi

case ${KTLS_VM_KERNEL:-default} in
rekey) probe=${KTLS_VM_CACHE:-tests/vm/cache/rekey}/ktls_probe ;;
*) probe=${KTLS_VM_CACHE:-tests/vm/cache}/ktls_probe ;;
esac
host_out=$("$probe" 2>&1) || true
echo "# host ($(uname -r)): $host_out"

# One boot: the probe, then the kernel's TLS counters.
t0=$EPOCHREALTIME
rc=0
# shellcheck disable=SC2016 # the script runs in the VM
vm_out=$(tests/vm/run.sh --timeout 120 -- bash -c '
	"$1"; echo "probe-exit=$?"
	echo "kernel=$(uname -r)"
	if [ -r /proc/net/tls_stat ]; then
		echo "tls_stat:"; cat /proc/net/tls_stat
	else
		echo "tls_stat: missing"
	fi' probe "$probe" 2>&1) || rc=$?
t1=$EPOCHREALTIME
ms=$(((${t1//[.,]/} - ${t0//[.,]/}) / 1000))

if ((rc == 77)); then
	echo "1..0 # SKIP $(grep -m1 'SKIP: ' <<<"$vm_out" | sed 's/^.*SKIP: //')"
	exit 0
fi

rekey=
[[ ${KTLS_VM_KERNEL:-} == rekey ]] && rekey=1
echo "1..$((rekey ? 3 : 2))"
kver=$(sed -n 's/^kernel=//p' <<<"$vm_out")
echo "# VM kernel ${kver:-?}; VM run took $((ms / 1000)).$(printf %03d $((ms % 1000)))s (run.sh exit $rc)"

if ((rc == 0)) && grep -qx 'ktls: ok' <<<"$vm_out" && grep -qx 'probe-exit=0' <<<"$vm_out"; then
	echo "ok 1 - kTLS works in VM"
else
	echo "not ok 1 - kTLS works in VM"
	diag <<<"$vm_out"
fi

tx=$(awk '$1 == "TlsTxSw" { print $2 }' <<<"$vm_out")
rx=$(awk '$1 == "TlsRxSw" { print $2 }' <<<"$vm_out")
if [[ $tx =~ ^[0-9]+$ ]] && ((tx >= 1)); then
	echo "ok 2 - /proc/net/tls_stat exists in VM and TlsTxSw >= 1"
	echo "# TlsTxSw=$tx TlsRxSw=${rx:-?}"
else
	echo "not ok 2 - /proc/net/tls_stat exists in VM and TlsTxSw >= 1"
	diag <<<"$vm_out"
fi

if [[ -n $rekey ]]; then
	if grep -q '^TlsRxRekeyOk[[:space:]]' <<<"$vm_out"; then
		echo "ok 3 - VM kernel has kTLS rekey (TlsRxRekeyOk in tls_stat)"
	else
		echo "not ok 3 - VM kernel has kTLS rekey (TlsRxRekeyOk in tls_stat)"
		diag <<<"$vm_out"
	fi
fi
