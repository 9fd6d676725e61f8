#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS 1.3 KeyUpdate followed in the kernel (tests/vm/rekey-suite.sh), inside a VM
# booted with a newer Debian kernel (>= 6.14: kTLS rekey), see KTLS_VM_KERNEL in
# tests/vm/build.sh.
export KTLS_VM_KERNEL=rekey
exec "$(dirname "$0")/suite.sh" tests/vm/rekey-suite.sh
