#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The kTLS suite (tests/vm/ktls-suite.sh) inside a VM booted with Debian 12's
# kernel (which has the tls module), because this machine's kernel has no
# CONFIG_TLS.
exec "$(dirname "$0")/suite.sh" tests/vm/ktls-suite.sh
