#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `ktls-sidecar inject`: golden files for every workload kind (native and legacy
# sidecar), idempotency, byte-for-byte pass-through, the opt-out annotation, the
# unix socket backend, errors that leave stdout empty; then offline validation of
# the output and of every manifest in k8s/ against pinned Kubernetes schemas (npm,
# skipped when the registry is out of reach) and the kustomize component (kubectl).
# UPDATE_GOLDEN=1 rewrites k8s/testdata/golden/ and k8s/examples/pgbouncer.yaml.
set -euo pipefail
source "$(dirname "$0")/../lib/tap.sh"

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
: "${KTLS_SIDECAR:=$REPO/build/ktls-sidecar}"
: "${K8S_VALIDATE_DIR:=$REPO/build/k8s-validate}"
IN="$REPO/k8s/testdata/in"
GOLD="$REPO/k8s/testdata/golden"
OPTS=(--image registry.example.com/ktls-sidecar:1.0 --secret pgbouncer-tls)
T="$(mktemp -d "${TMPDIR:-/tmp}/ktls-inject.XXXXXX")"
trap 'rm -rf "$T"' EXIT
[[ -x "$KTLS_SIDECAR" ]] || BAIL_OUT "$KTLS_SIDECAR is not executable (run make first)"

# inj NAME ARGS...: run the injector; stdout in $T/NAME.out, stderr in $T/NAME.err, status in $T/NAME.rc.
inj() {
    local name="$1" rc=0
    shift
    "$KTLS_SIDECAR" inject "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null || rc=$?
    echo "$rc" >"$T/$name.rc"
    return "$rc"
}
inj_stdin() { # inj_stdin NAME INPUT-FILE ARGS...
    local name="$1" input="$2" rc=0
    shift 2
    "$KTLS_SIDECAR" inject "$@" <"$input" >"$T/$name.out" 2>"$T/$name.err" || rc=$?
    echo "$rc" >"$T/$name.rc"
    return "$rc"
}

# same_file GOT WANT: byte-identical, else show the first lines of the diff.
same_file() { cmp -s "$1" "$2" || { diff -u "$2" "$1" | head -40; return 1; }; }

# golden NAME INPUT ARGS...: inject, compare with $GOLD/NAME.yaml, then inject the output again.
golden() {
    local name="$1" input="$2"
    shift 2
    if ! inj "$name" "${OPTS[@]}" "$@" "$IN/$input"; then
        fail "$name: inject exits 0" "$(cat "$T/$name.err")"
        skip "$name: no output to compare" 2
        return
    fi
    [[ -n "${UPDATE_GOLDEN:-}" ]] && cp "$T/$name.out" "$GOLD/$name.yaml"
    ok "$name: output matches k8s/testdata/golden/$name.yaml" same_file "$T/$name.out" "$GOLD/$name.yaml"
    inj "$name.again" "${OPTS[@]}" "$@" "$T/$name.out" || true
    ok "$name: injecting the output again changes no byte" same_file "$T/$name.again.out" "$T/$name.out"
}

note "--- golden files, every kind, native sidecar and --legacy"
for kind in pod deployment statefulset daemonset replicaset job cronjob list; do
    golden "$kind.native" "$kind.yaml"
    golden "$kind.legacy" "$kind.yaml" --legacy
done
like "$(cat "$T/job.legacy.err")" 'warning: .*job.yaml:2: Job/bulk-load-pooler: with --legacy' \
    "a legacy sidecar in a Job draws a warning that names it"
is "$(cat "$T/job.native.err")" "" "the native sidecar in a Job draws none"
golden deployment.full deployment.yaml --container pgbouncer --mtls --net-admin --listen-port 5433 \
    --backend 6433 --metrics-port 9188 --seccomp-localhost profiles/ktls-sidecar.json \
    --config-map ktls-sidecar-config --cpu-limit 1 --memory-limit 256Mi --set log-format=json --set workers=2
golden mixed.unix mixed.yaml --backend /var/run/pgbouncer/.s.PGSQL.6432 --container pgbouncer
golden shared-socket.unix shared-socket.yaml --backend unix:/tmp/.s.PGSQL.6432
golden utf8.native utf8.yaml

note "--- what the sidecar looks like"
d="$T/deployment.native.out"
like "$(cat "$d")" $'initContainers:\n      - name: ktls-sidecar\n        image: registry.example.com/ktls-sidecar:1.0\n        restartPolicy: Always' \
    "native: an init container with restartPolicy Always"
unlike "$(sed -n '/^      containers:/,$p' "$d")" $'name: ktls-sidecar\n' "native: not among the regular containers"
like "$(sed -n '/^      containers:/,/^      volumes:/p' "$T/deployment.legacy.out")" $'- name: ktls-sidecar\n' \
    "legacy: a regular container"
unlike "$(cat "$T/deployment.legacy.out")" 'restartPolicy|initContainers' "legacy: no restartPolicy, no initContainers"
for want in 'name: pg-tls' 'containerPort: 5432' 'name: ktls-metrics' 'containerPort: 9187' \
    'value: "0.0.0.0:5432"' 'value: "127.0.0.1:6432"' 'value: /etc/ktls-sidecar/tls/tls.crt' \
    'value: /etc/ktls-sidecar/tls/tls.key' 'value: /run/ktls-sidecar/admin.sock' 'value: "0.0.0.0:9187"' \
    'runAsNonRoot: true' 'readOnlyRootFilesystem: true' 'allowPrivilegeEscalation: false' $'drop:\n            - ALL' \
    'type: RuntimeDefault' 'path: /healthz' 'path: /readyz' 'secretName: pgbouncer-tls' 'mountPath: /etc/ktls-sidecar/tls' \
    'medium: Memory' 'memory: 128Mi'; do
    like "$(cat "$d")" "$want" "default sidecar has: ${want//$'\n'/ }"
done
unlike "$(cat "$d")" 'CLIENT_CA|NET_ADMIN|Localhost' "no mTLS, NET_ADMIN or Localhost profile unless asked"
f="$(cat "$T/deployment.full.out")"
for want in 'name: KTLS_SIDECAR_CLIENT_CA' 'value: /etc/ktls-sidecar/tls/ca.crt' 'name: KTLS_SIDECAR_VERIFY' \
    $'add:\n            - NET_ADMIN' 'type: Localhost' 'localhostProfile: profiles/ktls-sidecar.json' \
    'value: "127.0.0.1:6433"' 'containerPort: 5433' 'containerPort: 9188' 'name: KTLS_SIDECAR_LOG_FORMAT' \
    'name: KTLS_SIDECAR_WORKERS' 'value: /etc/ktls-sidecar/config/ktls-sidecar.conf' 'name: ktls-sidecar-config'; do
    like "$f" "$want" "all options: ${want//$'\n'/ }"
done

note "--- unix socket backend"
u="$(cat "$T/mixed.unix.out")"
like "$u" 'value: unix:/var/run/pgbouncer/.s.PGSQL.6432' "KTLS_SIDECAR_BACKEND is the unix socket"
like "$(sed -n '/^      - name: pgbouncer$/,/^      volumes:/p' <<<"$u")" \
    $'- name: ktls-sidecar-pgsock\n          mountPath: /var/run/pgbouncer' "the pooler (--container pgbouncer) mounts the socket directory"
unlike "$(sed -n '/^      - name: exporter$/,/^      - name: pgbouncer$/p' <<<"$u")" 'pgsock' "the other container does not"
like "$(sed -n '/^      initContainers:/,/^      containers:/p' <<<"$u")" \
    $'- name: ktls-sidecar-pgsock\n          mountPath: /var/run/pgbouncer' "the sidecar mounts it too"
like "$u" $'- name: ktls-sidecar-pgsock\n        emptyDir:' "on an emptyDir volume"
s="$(cat "$T/shared-socket.unix.out")"
like "$(sed -n '/^      initContainers:/,/^      containers:/p' <<<"$s")" $'- name: sockets\n          mountPath: /tmp' \
    "a volume the pooler already mounts at the socket directory is shared instead"
unlike "$s" 'pgsock' "... and no second volume is added"

note "--- pass-through, comments and the opt-out annotation"
inj passthrough "${OPTS[@]}" "$IN/passthrough.yaml" || true
ok "ConfigMap, Service, Secret, a null document: byte for byte" same_file "$T/passthrough.out" "$IN/passthrough.yaml"
inj skip "${OPTS[@]}" "$IN/skip.yaml" || true
ok "ktls-sidecar.io/inject=false workloads opted out on their metadata or pod template stay as they are" \
    same_file "$T/skip.out" "$IN/skip.yaml"
# split a stream at '---' lines into $T/PREFIX.N
split_docs() { awk -v p="$T/$2." 'BEGIN{n=1} /^---/{n++} {print > (p n)}' "$1"; }
split_docs "$IN/mixed.yaml" in
split_docs "$T/mixed.unix.out" out
ok "mixed stream: the ConfigMap before the workload is copied byte for byte" same_file "$T/out.1" "$T/in.1"
ok "mixed stream: the Service after it too" same_file "$T/out.3" "$T/in.3"
like "$u" $'---\n# The pooler itself.\napiVersion: apps/v1' "the comment above a changed document is kept"
like "$u" $'# end of the pooler\n---' "the comment after it too"
like "$(cat "$T/list.native.out")" $'- apiVersion: v1\n  kind: Service' "a List's Service item is kept"
is "$(grep -c 'name: ktls-sidecar$' "$T/list.native.out")" 1 "a List: the Deployment gets it, the opted-out StatefulSet does not"
inj_stdin empty /dev/null "${OPTS[@]}" || true
is "$(cat "$T/empty.rc"):$(wc -c <"$T/empty.out")" "0:0" "empty input: empty output, status 0"

note "--- changing options refreshes the sidecar in place"
inj tolegacy "${OPTS[@]}" --legacy "$T/deployment.native.out" || true
ok "native output re-injected with --legacy equals the --legacy golden" same_file "$T/tolegacy.out" "$GOLD/deployment.legacy.yaml"
inj tonative "${OPTS[@]}" "$T/deployment.legacy.out" || true
ok "... and back" same_file "$T/tonative.out" "$GOLD/deployment.native.yaml"
inj newimage --image registry.example.com/ktls-sidecar:2.0 --secret pgbouncer-tls "$T/deployment.native.out" || true
is "$(diff "$T/deployment.native.out" "$T/newimage.out" | grep -c '^[<>]')" 2 "a new --image changes exactly one line"
inj tcp "${OPTS[@]}" --container pgbouncer "$T/mixed.unix.out" || true
unlike "$(cat "$T/tcp.out")" 'pgsock' "switching the backend back to TCP removes the socket volume and mounts"
inj sock "${OPTS[@]}" --backend /var/run/pgbouncer/.s.PGSQL.6432 "$IN/deployment.yaml" || true
inj sock2tcp "${OPTS[@]}" "$T/sock.out" || true
ok "... leaving exactly what TCP injection gives" same_file "$T/sock2tcp.out" "$GOLD/deployment.native.yaml"

note "--- several files, stdin"
inj multi "${OPTS[@]}" "$IN/pod.yaml" "$IN/job.yaml" || true
is "$(grep -c '^kind:' "$T/multi.out"):$(grep -c '^---$' "$T/multi.out")" "2:1" "two files: two documents, one separator"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}' >"$T/nonl.yaml"
inj nonl "${OPTS[@]}" "$T/nonl.yaml" "$T/nonl.yaml" || true
is "$(cat "$T/nonl.out")" $'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}' \
    "a file without a final newline does not run into the next one"
inj_stdin stdin "$IN/pod.yaml" "${OPTS[@]}" - || true
ok "'-' reads stdin" same_file "$T/stdin.out" "$GOLD/pod.native.yaml"

note "--- errors: non-zero status, the line in the message, nothing on stdout"
# bad_yaml NAME REGEX: the input is $T/NAME.yaml
bad_yaml() {
    local name="$1" re="$2"
    inj_stdin "$name" "$T/$name.yaml" "${OPTS[@]}" || true
    is "$(cat "$T/$name.rc")" 1 "$name: exit status 1"
    like "$(cat "$T/$name.err")" "$re" "$name: stderr names the place"
    is "$(wc -c <"$T/$name.out")" 0 "$name: stdout is empty"
}
printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: [a, b\nspec: {}\n' >"$T/unclosed.yaml"
bad_yaml unclosed '<stdin>:6:5: did not find expected'
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: y\n' >"$T/indent.yaml"
bad_yaml indent '<stdin>:5:2: did not find expected key'
printf 'kind: Pod\n\tname: x\n' >"$T/tab.yaml"
bad_yaml tab '<stdin>:2:1: found a tab character'
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n' >"$T/nocontainers.yaml"
bad_yaml nocontainers '<stdin>:1: Pod/x: the pod spec has no containers'
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: pg, ports: [{containerPort: 5432}]}]\n' >"$T/port.yaml"
bad_yaml port "container 'pg' already uses port 5432"
printf 'x: &spec {containers: [{name: a}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: *spec\n' >"$T/alias.yaml"
bad_yaml alias '<stdin>:3: Pod/x: the pod spec is not a mapping \(aliases are not followed\)'
printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n' >"$T/notemplate.yaml"
bad_yaml notemplate 'Deployment/d: spec.template is missing'
head -c 20000 /dev/zero | tr '\0' '[' >"$T/deep.yaml"
bad_yaml deep 'nesting deeper than 512 levels'
printf '\xff\xfea\x00:\x00' >"$T/utf16.yaml"
bad_yaml utf16 'UTF-16 input is not supported'
inj twofiles "${OPTS[@]}" "$IN/pod.yaml" "$T/unclosed.yaml" || true
like "$(cat "$T/twofiles.err")" "unclosed.yaml:6:5:" "a bad second file: the error names it"
is "$(cat "$T/twofiles.rc"):$(wc -c <"$T/twofiles.out")" "1:0" "... and nothing of the good first file is written"
inj nofile "${OPTS[@]}" "$T/does-not-exist.yaml" || true
like "$(cat "$T/nofile.rc") $(cat "$T/nofile.err")" '^1 .*does-not-exist.yaml: No such file' "a missing file: status 1, named"
inj dirarg "${OPTS[@]}" "$T" || true
like "$(cat "$T/dirarg.rc") $(cat "$T/dirarg.err")" "^1 .*: Is a directory" "a directory: status 1, says so"
inj nocont "${OPTS[@]}" --container nope "$IN/pod.yaml" || true
like "$(cat "$T/nocont.err")" "pod.yaml:2: Pod/pgbouncer: no container named 'nope'" "--container that does not exist"
for bad in "--listen-port 0" "--listen-port 70000" "--secret Bad_Name" "--backend nowhere" "--backend rel/.s.PGSQL.1" \
    "--backend /.s.PGSQL.6432" "--container UPPER" "--set noequals" "--seccomp-localhost /abs.json" "--memory-limit lots" \
    "--bogus" "--legacy=yes" "--backend 5432" "--metrics-port 5432"; do
    # shellcheck disable=SC2086
    inj opterr $bad "$IN/pod.yaml" || true
    is "$(cat "$T/opterr.rc"):$(wc -c <"$T/opterr.out")" "2:0" "option error ($bad): status 2, no output"
done
like "$(cat "$T/opterr.err")" 'listen-port and --metrics-port are both 5432' "... with a message"
# --set goes through the daemon's own parser, and leaves what the injector sets to its flags
for case in "maxconns=5|unknown option 'maxconns'" "workers=two|'two' is not an integer" \
    "idle-timeout=soon|not a duration" "metrics-listen=0.0.0.0:9000|use --metrics-port" \
    "listen=0.0.0.0:1|use --listen-port" "key=/k|use --secret"; do
    inj opterr --set "${case%%|*}" "$IN/pod.yaml" || true
    like "$(cat "$T/opterr.rc"):$(wc -c <"$T/opterr.out") $(cat "$T/opterr.err")" "^2:0 .*${case#*|}" \
        "--set ${case%%|*}: status 2, no output, says why"
done
# without a ConfigMap the variables are the whole configuration: what the daemon would
# refuse at start is refused here, not in a pod that restarts forever
inj opterr --set client-user-match=cn "$IN/pod.yaml" || true
like "$(cat "$T/opterr.rc"):$(wc -c <"$T/opterr.out") $(cat "$T/opterr.err")" \
    "^2:0 .*the sidecar would refuse this configuration at start: client-user-match: .*--verify require" \
    "--set client-user-match=cn without --mtls: status 2, no output, the daemon's reason"
inj um --mtls --set client-user-match=cn "$IN/pod.yaml" || true
like "$(cat "$T/um.rc") $(cat "$T/um.out")" "^0 .*KTLS_SIDECAR_CLIENT_USER_MATCH" "... with --mtls: injected"
inj umc --config-map cfg --set client-user-match=cn "$IN/pod.yaml" || true
is "$(cat "$T/umc.rc")" 0 "... with --config-map (which may hold verify = require): injected"
inj opterr --set max-conns=5 --set max-conns=6 "$IN/pod.yaml" || true
like "$(cat "$T/opterr.rc") $(cat "$T/opterr.err")" "^2 .*max-conns is already set" "--set twice for one option"
inj opterr --secret || true
like "$(cat "$T/opterr.rc") $(cat "$T/opterr.err")" '^2 .*--secret needs a value' "an option without its value"
inj help --help || true
h="$(cat "$T/help.out")"
is "$(cat "$T/help.rc")" 0 "--help exits 0"
for o in image secret listen-port metrics-port backend container mtls client-ca legacy net-admin seccomp-localhost \
    config-map cpu-request memory-request cpu-limit memory-limit set; do
    like "$h" "--$o" "--help lists --$o"
done

note "--- checked-in manifests that come from the injector"
inj example --secret pgbouncer-tls --config-map ktls-sidecar-config "$REPO/k8s/examples/pgbouncer-plain.yaml" || true
[[ -n "${UPDATE_GOLDEN:-}" ]] && cp "$T/example.out" "$REPO/k8s/examples/pgbouncer.yaml"
ok "k8s/examples/pgbouncer.yaml is the injector's output for pgbouncer-plain.yaml" \
    same_file "$T/example.out" "$REPO/k8s/examples/pgbouncer.yaml"
ok "the seccomp profile is JSON that allows the io_uring calls and denies the rest" \
    jq -e '.defaultAction == "SCMP_ACT_ERRNO" and ([.syscalls[] | select(.action == "SCMP_ACT_ALLOW") | .names[]]
        | contains(["io_uring_setup", "io_uring_enter", "io_uring_register", "epoll_wait", "splice", "setsockopt"]))' \
    "$REPO/k8s/seccomp/ktls-sidecar.json"

ok "no sanitizer report from any run" eval '! grep -l "Sanitizer\|runtime error" "$T"/*.err'

note "--- offline schema validation (kubernetes-models, pinned in tests/k8s/package-lock.json)"
# Install the pinned validator into K8S_VALIDATE_DIR once; 0, or 1 with the reason in $T/npm.log.
validator_ready() {
    local lock="$REPO/tests/k8s/package-lock.json" d="$K8S_VALIDATE_DIR"
    { node --version && npm --version; } >/dev/null 2>&1 || { echo "node and npm are not installed" >"$T/npm.log"; return 1; }
    mkdir -p "$d"
    (
        flock 9
        cmp -s "$lock" "$d/package-lock.json" && [[ -d "$d/node_modules/kubernetes-models" ]] && exit 0
        rm -rf "$d/node_modules"
        cp "$REPO/tests/k8s/package.json" "$lock" "$d/"
        cd "$d" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >"$T/npm.log" 2>&1 ||
            { rm -rf "$d/node_modules" "$d/package-lock.json"; exit 1; }
    ) 9>"$d/.lock"
}
manifests=()
while IFS= read -r -d '' m; do manifests+=("$m"); done < <(find "$REPO/k8s" -path "$REPO/k8s/kustomize/component/sidecar-patch.yaml" -prune -o \
    \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)
VALIDATOR=ok
validator_ready || VALIDATOR=""
V=(node "$REPO/tests/k8s/validate.js" --modules "$K8S_VALIDATE_DIR")
if [[ -z "$VALIDATOR" ]]; then
    why="$({ grep -m1 -o 'npm error code .*' "$T/npm.log"; grep -m1 -oE '[A-Za-z]*Error: .*' "$T/npm.log"; } | tr '\n' ' ' || true)"
    [[ -n "$why" ]] || why="$(tail -n 2 "$T/npm.log" | tr '\n' ' ')"
    skip "cannot install the pinned validator with npm: $why" 4
else
    ok "every injector output validates (schema, no unknown fields, API server rules)" "${V[@]}" "$T"/*.native.out \
        "$T"/*.legacy.out "$T"/*.full.out "$T"/*.unix.out
    ok "every manifest in k8s/ validates (${#manifests[@]} files)" "${V[@]}" "${manifests[@]}"
    ok "the kustomize component's patch validates as a workload patch" "${V[@]}" --patch \
        "$REPO/k8s/kustomize/component/sidecar-patch.yaml"
    inj kexample "$REPO/k8s/kustomize/example/deployment.yaml" || true
    ok "the component's patch carries the injector's default sidecar" node "$REPO/tests/k8s/same-sidecar.js" \
        --modules "$K8S_VALIDATE_DIR" "$T/kexample.out" "$REPO/k8s/kustomize/component/sidecar-patch.yaml"
fi

note "--- the kustomize component renders"
if ! timeout 60 kubectl version --client >/dev/null 2>&1; then
    skip "kubectl is not installed (Debian 12 has only kubectl 1.20, without kustomize Components)" 2
elif ! timeout 120 kubectl kustomize "$REPO/k8s/kustomize/example" >"$T/kustomize.out" 2>"$T/kustomize.err"; then
    fail "kubectl kustomize k8s/kustomize/example" "$(cat "$T/kustomize.err")"
    skip "nothing rendered" 1
elif [[ -z "$VALIDATOR" ]]; then
    ok "kubectl kustomize renders the example" grep -q 'name: ktls-sidecar$' "$T/kustomize.out"
    skip "cannot install the pinned validator with npm: $why" 1
else
    ok "kubectl kustomize renders the example, and it validates" "${V[@]}" "$T/kustomize.out"
    ok "the rendered sidecar is the injector's" node "$REPO/tests/k8s/same-sidecar.js" --modules "$K8S_VALIDATE_DIR" \
        "$T/kexample.out" "$T/kustomize.out"
fi
done_testing
