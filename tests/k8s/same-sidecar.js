#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// Do two YAML files carry the same ktls-sidecar? Compares, key order aside, the
// container named ktls-sidecar and the volumes named ktls-sidecar-* of the first
// workload in each (used for the kustomize component against the injector).
// Usage: node same-sidecar.js --modules DIR A.yaml B.yaml   (exit 0: same; 1: differ)
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const args = process.argv.slice(2);
if (args.length !== 4 || args[0] !== "--modules") {
  console.error("usage: same-sidecar.js --modules DIR A.yaml B.yaml");
  process.exit(2);
}
const YAML = createRequire(path.join(path.resolve(args[1]), "noop.js"))("yaml");

// Stable JSON: object keys sorted at every level.
function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]));
  return v;
}

function sidecarOf(file) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" })) {
    const obj = doc.toJS() || {};
    const spec = (((obj.spec || {}).template || {}).spec) || {};
    const c = [...(spec.initContainers || []), ...(spec.containers || [])].find((x) => x.name === "ktls-sidecar");
    if (c) return JSON.stringify(canon({ container: c, volumes: (spec.volumes || []).filter((v) => v.name.startsWith("ktls-sidecar-")) }), null, 1);
  }
  return null;
}

const a = sidecarOf(args[2]), b = sidecarOf(args[3]);
if (!a || !b) {
  console.log(`no ktls-sidecar container in ${!a ? args[2] : args[3]}`);
  process.exit(1);
}
if (a === b) {
  console.log("same sidecar");
  process.exit(0);
}
const al = a.split("\n"), bl = b.split("\n");
const i = al.findIndex((l, k) => l !== bl[k]);
console.log(`sidecars differ at line ${i + 1} of their canonical JSON:\n  ${args[2]}: ${al[i]}\n  ${args[3]}: ${bl[i]}`);
process.exit(1);
