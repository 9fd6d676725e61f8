#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// Offline validation of Kubernetes YAML for tests/t/60-inject.t, with the pinned
// packages of tests/k8s/package-lock.json installed in --modules DIR:
//  1. kubernetes-models (Kubernetes OpenAPI JSON schemas; cert-manager's for its CRDs),
//  2. TypeScript excess-property checks against the same models' interfaces, because
//     the OpenAPI schemas accept unknown fields (a typo would pass step 1),
//  3. a few checks the API server does beyond the schema on every pod spec.
// Usage: node validate.js --modules DIR [--patch] FILE...   (exit 0: all valid; 1: errors)
// --patch: the files are strategic merge patches of workloads; the fields a patch
// leaves out (selector, the pod's containers) are filled in before validating.
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const args = process.argv.slice(2);
const mi = args.indexOf("--modules");
if (mi < 0 || !args[mi + 1] || args.length < 3) {
  console.error("usage: validate.js --modules DIR FILE...");
  process.exit(2);
}
const modDir = path.resolve(args[mi + 1]);
const patchMode = args.includes("--patch");
const files = args.filter((a, i) => i !== mi && i !== mi + 1 && a !== "--patch");
const req = createRequire(path.join(modDir, "noop.js"));
const YAML = req("yaml");
const ts = req("typescript");

let failures = 0;
const typed = []; // [{label, module, type, obj}] for the TypeScript pass

function fail(label, msg) {
  failures++;
  console.log(`FAIL ${label}: ${msg}`);
}

// Module path of the model class for apiVersion/kind.
function modelModule(apiVersion, kind) {
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const version = apiVersion.slice(slash + 1);
  if (group.endsWith("cert-manager.io")) return `@kubernetes-models/cert-manager/${group}/${version}/${kind}`;
  return `kubernetes-models/${group ? group + "/" : ""}${version}/${kind}`;
}

// API-server checks that the OpenAPI schema cannot express, for one PodSpec.
function checkPodSpec(label, spec) {
  const init = spec.initContainers || [], main = spec.containers || [];
  const vols = new Set();
  for (const v of spec.volumes || []) {
    if (vols.has(v.name)) fail(label, `duplicate volume ${v.name}`);
    vols.add(v.name);
  }
  const names = new Set();
  for (const c of [...init, ...main]) {
    if (names.has(c.name)) fail(label, `duplicate container name ${c.name}`);
    names.add(c.name);
    const ports = new Set();
    for (const p of c.ports || []) {
      if (p.name && !/^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(p.name))
        fail(label, `${c.name}: port name ${p.name} is not an IANA_SVC_NAME`);
      if (p.name) ports.add(p.name);
    }
    const paths = new Set();
    for (const m of c.volumeMounts || []) {
      if (!vols.has(m.name)) fail(label, `${c.name}: volumeMount ${m.name} has no volume`);
      if (paths.has(m.mountPath)) fail(label, `${c.name}: two mounts at ${m.mountPath}`);
      paths.add(m.mountPath);
    }
    for (const pr of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      const port = c[pr] && c[pr].httpGet && c[pr].httpGet.port;
      if (typeof port === "string" && !ports.has(port)) fail(label, `${c.name}: ${pr} names unknown port ${port}`);
    }
    if (c.restartPolicy !== undefined && (!init.includes(c) || c.restartPolicy !== "Always"))
      fail(label, `${c.name}: restartPolicy is only allowed as Always on an init container`);
  }
}

// The pod specs inside a workload object.
function podSpecs(obj) {
  const s = obj.spec || {};
  switch (obj.kind) {
    case "Pod": return [s];
    case "CronJob": return [((((s.jobTemplate || {}).spec || {}).template || {}).spec) || {}];
    case "Deployment": case "StatefulSet": case "DaemonSet": case "ReplicaSet": case "Job":
      return [(s.template || {}).spec || {}];
    default: return [];
  }
}

// Give a workload patch the required fields it leaves to the object it patches.
function completePatch(obj) {
  const spec = (obj.spec = obj.spec || {});
  if (obj.kind !== "Pod") spec.selector = spec.selector || { matchLabels: { app: "patched" } };
  const pod = podSpecs(obj)[0];
  if (pod && !pod.containers) pod.containers = [{ name: "patched", image: "patched" }];
}

function validateObject(label, obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return fail(label, "not a mapping");
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") return fail(label, "no apiVersion/kind");
  label += ` ${kind}/${(obj.metadata || {}).name || "-"}`;
  if (apiVersion.startsWith("kustomize.config.k8s.io/")) {
    console.log(`skip ${label}: kustomize file, not an API object (rendered with kubectl kustomize instead)`);
    return;
  }
  if (kind === "List" && apiVersion === "v1") {
    if (!Array.isArray(obj.items)) return fail(label, "List without items");
    obj.items.forEach((it, i) => validateObject(`${label}/items[${i}]`, it));
    return;
  }
  if (patchMode) completePatch(obj);
  const mod = modelModule(apiVersion, kind);
  let Model;
  try {
    Model = req(mod)[kind];
  } catch (e) {
    return fail(label, `no schema for ${apiVersion} ${kind} in the pinned models`);
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    return fail(label, `schema: ${e.message}`);
  }
  for (const spec of podSpecs(obj)) checkPodSpec(label, spec);
  typed.push({ label, mod, type: `I${kind}`, obj });
  console.log(`ok ${label}`);
}

// Excess-property check: every object as a fresh literal of its model's interface.
function typeCheck() {
  if (!typed.length) return;
  const file = path.join(modDir, `.check-${process.pid}.ts`);
  const lines = [];
  const starts = [];
  typed.forEach((t, i) => lines.push(`import type { ${t.type} as T${i} } from ${JSON.stringify(t.mod)};`));
  typed.forEach((t, i) => {
    starts.push([lines.length, t.label]);
    lines.push(...`export const o${i}: T${i} = ${JSON.stringify(t.obj, null, 2)};`.split("\n"));
  });
  fs.writeFileSync(file, lines.join("\n") + "\n");
  try {
    const program = ts.createProgram([file], {
      strict: true, noEmit: true, skipLibCheck: true, types: [],
      module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10,
      target: ts.ScriptTarget.ES2020,
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const line = d.file ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
      const owner = starts.filter(([l]) => l <= line).pop();
      fail(owner ? owner[1] : "typescript", `unknown field or wrong type: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
    }
  } finally {
    fs.unlinkSync(file);
  }
}

for (const f of files) {
  let docs;
  try {
    // Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml): "on", "yes", 0777 are not strings there.
    docs = YAML.parseAllDocuments(fs.readFileSync(f, "utf8"), { version: "1.1" });
  } catch (e) {
    fail(f, e.message);
    continue;
  }
  docs.forEach((d, i) => {
    if (d.errors.length) return fail(`${f}#${i + 1}`, d.errors.map((e) => e.message).join("; "));
    const obj = d.toJS();
    if (obj !== null && obj !== undefined) validateObject(`${f}#${i + 1}`, obj);
  });
}
typeCheck();
console.log(failures ? `${failures} error(s)` : "all valid");
process.exit(failures ? 1 : 0);
