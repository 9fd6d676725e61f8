# SPDX-License-Identifier: MIT
# tests/lib/tap.sh: minimal TAP (Test Anything Protocol) producer for bash tests.
# Owns test numbering, pass/fail bookkeeping, the plan line and diagnostics.
# Safe under `set -euo pipefail`: assertions never return non-zero, so a failed
# check is reported and the test script carries on.
#
# API (source this file; every assertion prints exactly one TAP line):
#   plan N                     announce N tests up front (optional, see done_testing)
#   skip_all "reason"          print "1..0 # SKIP reason" and exit 0
#   ok "name" cmd [args...]    pass if cmd exits 0; runs in the current shell (so
#                              variables/exports it sets persist; note bash disables
#                              errexit inside it); stdout+stderr are captured and
#                              shown as diagnostics only on failure
#   nok "name" cmd [args...]   pass if cmd exits non-zero (same capture rules)
#   ok_rc RC "name"            pass if RC (an exit status, e.g. "$?") is 0
#   pass "name" / fail "name" [diag...]   unconditional result
#   is GOT EXPECTED "name"     string equality
#   isnt GOT UNEXPECTED "name" string inequality
#   like GOT REGEX "name"      bash ERE match ([[ GOT =~ REGEX ]])
#   unlike GOT REGEX "name"    no ERE match
#   skip "reason" [N]          record N (default 1) skipped tests
#   diag msg...                "# msg" on stderr (shown by prove even without -v)
#   note msg...                "# msg" on stdout (shown by prove -v)
#   BAIL_OUT "reason"          abort the whole run (exit 255)
#   done_testing               print the plan if none was given; exit 0 if every
#                              test passed and the count matches the plan, else
#                              exit with the number of failures (max 254) / 255
# Variables: TAP_VERBOSE=1 also shows captured output of passing ok/nok commands.

# shellcheck disable=SC2001  # sed is clearer for prefixing every line
[[ -n "${_TAP_SH_LOADED:-}" ]] && return 0
_TAP_SH_LOADED=1

_TAP_N=0          # tests run so far
_TAP_FAILED=0     # failed tests so far
_TAP_PLANNED=""   # planned count, empty until plan()/done_testing()

# Print every line of every argument prefixed with "# " (helper for diag/note).
_tap_comment() { local a l; for a in "$@"; do while IFS= read -r l; do printf '# %s\n' "$l"; done <<<"$a"; done; }

# Print a diagnostic on stderr.
diag() { _tap_comment "$@" >&2; }

# Print a note on stdout.
note() { _tap_comment "$@"; }

# Announce the number of tests.
plan() { _TAP_PLANNED="$1"; printf '1..%s\n' "$1"; }

# Skip the whole test file.
skip_all() { printf '1..0 # SKIP %s\n' "${1:-}"; exit 0; }

# Abort the whole test run.
BAIL_OUT() { printf 'Bail out!  %s\n' "${1:-}"; exit 255; }

# Emit one result line: _tap_result PASSED(0/1) NAME [DIRECTIVE].
_tap_result() {
    _TAP_N=$((_TAP_N + 1))
    local name="${2:-}" dir="${3:-}"
    name="${name//#/\\#}"
    if [[ "$1" == 1 ]]; then
        printf 'ok %d%s%s\n' "$_TAP_N" "${name:+ - $name}" "${dir:+ # $dir}"
    else
        _TAP_FAILED=$((_TAP_FAILED + 1))
        printf 'not ok %d%s%s\n' "$_TAP_N" "${name:+ - $name}" "${dir:+ # $dir}"
        diag "  Failed test '${2:-}' (${BASH_SOURCE[2]:-?} line ${BASH_LINENO[1]:-?})"
    fi
}

# Unconditional pass.
pass() { _tap_result 1 "${1:-}"; }

# Unconditional failure with optional extra diagnostics.
fail() { _tap_result 0 "${1:-}"; shift || true; [[ $# -gt 0 ]] && diag "$@"; return 0; }

# Pass if the given exit status is 0.
ok_rc() { if [[ "${1:-1}" == 0 ]]; then _tap_result 1 "${2:-}"; else _tap_result 0 "${2:-}"; diag "    exit status: ${1:-?}"; fi; }

# Run "cmd args..." in the current shell with output captured; sets _tap_rc/_tap_out.
_tap_run() {
    local f
    f="$(mktemp "${TMPDIR:-/tmp}/tap.XXXXXX")"
    _tap_rc=0
    "$@" >"$f" 2>&1 || _tap_rc=$?
    _tap_out="$(cat "$f")"
    rm -f "$f"
}

# Show the command, its status and its captured output as diagnostics.
_tap_cmd_diag() {
    diag "    command: $(printf '%q ' "$@")" "    exit status: $_tap_rc"
    [[ -n "$_tap_out" ]] && diag "$(sed 's/^/    | /' <<<"$_tap_out")"
    return 0
}

# ok "name" cmd args...: pass if cmd exits 0.
ok() {
    local name="$1"; shift
    _tap_run "$@"
    if [[ $_tap_rc == 0 ]]; then
        _tap_result 1 "$name"
        [[ -n "${TAP_VERBOSE:-}" && -n "$_tap_out" ]] && note "$(sed 's/^/    | /' <<<"$_tap_out")"
    else
        _tap_result 0 "$name"; _tap_cmd_diag "$@"
    fi
    return 0
}

# nok "name" cmd args...: pass if cmd exits non-zero.
nok() {
    local name="$1"; shift
    _tap_run "$@"
    if [[ $_tap_rc != 0 ]]; then
        _tap_result 1 "$name"
        [[ -n "${TAP_VERBOSE:-}" && -n "$_tap_out" ]] && note "$(sed 's/^/    | /' <<<"$_tap_out")"
    else
        _tap_result 0 "$name"; diag "    expected a non-zero exit status"; _tap_cmd_diag "$@"
    fi
    return 0
}

# is GOT EXPECTED "name": string equality.
is() {
    if [[ "$1" == "$2" ]]; then _tap_result 1 "${3:-}"
    else _tap_result 0 "${3:-}"; diag "         got: '$1'" "    expected: '$2'"; fi
}

# isnt GOT UNEXPECTED "name": string inequality.
isnt() {
    if [[ "$1" != "$2" ]]; then _tap_result 1 "${3:-}"
    else _tap_result 0 "${3:-}"; diag "         got: '$1'" "    expected: anything else"; fi
}

# like GOT REGEX "name": extended-regex match.
like() {
    if [[ "$1" =~ $2 ]]; then _tap_result 1 "${3:-}"
    else _tap_result 0 "${3:-}"; diag "                  '$1'" "    doesn't match '$2'"; fi
}

# unlike GOT REGEX "name": extended-regex non-match.
unlike() {
    if ! [[ "$1" =~ $2 ]]; then _tap_result 1 "${3:-}"
    else _tap_result 0 "${3:-}"; diag "                  '$1'" "          matches '$2'"; fi
}

# skip "reason" [N]: record N skipped tests.
skip() {
    local i n="${2:-1}"
    for ((i = 0; i < n; i++)); do _tap_result 1 "" "skip ${1:-}"; done
}

# Finish: print the plan if needed and exit with the TAP-conventional status.
done_testing() {
    if [[ -z "$_TAP_PLANNED" ]]; then
        _TAP_PLANNED=$_TAP_N
        printf '1..%d\n' "$_TAP_N"
    fi
    if [[ "$_TAP_PLANNED" != "$_TAP_N" ]]; then
        diag "Looks like you planned $_TAP_PLANNED tests but ran $_TAP_N."
        exit 255
    fi
    if ((_TAP_FAILED > 0)); then
        diag "Looks like you failed $_TAP_FAILED test(s) of $_TAP_N."
        exit $((_TAP_FAILED > 254 ? 254 : _TAP_FAILED))
    fi
    exit 0
}
