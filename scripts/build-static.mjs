#!/usr/bin/env node
// Copies what the browser needs into portal/static/vendor/ (gitignored), so that
// nothing is fetched from a CDN at run time (DESIGN.md, "Browser code"):
//
//   vendor/pyodide/      the pinned npm `pyodide` runtime (package.json + lockfile)
//   vendor/wheels/       the pydicom wheel, the same version the CLI's venv runs
//   vendor/medchain-py/  OUR de-identification code, copied from training/, so the
//                        browser runs the very code the CLI runs (they cannot drift)
//   vendor/medchain-py/bundle.json   what the page loads into Pyodide, with hashes
//
// Run by `make static` after `npm ci`; idempotent and quick.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const VENDOR = path.join(ROOT, "portal", "static", "vendor");
const PYODIDE_SRC = path.join(ROOT, "node_modules", "pyodide");
const PYODIDE_FILES = [
  "pyodide.mjs",
  "pyodide.asm.mjs",
  "pyodide.asm.wasm",
  "python_stdlib.zip",
  "pyodide-lock.json",
  "package.json",
];
// The ingest pipeline and what it imports; none of them may import torch or numpy.
// Paths are relative to training/ and keep their folders under vendor/medchain-py/training/.
const TRAINING_FILES = [
  "__init__.py",
  "ingest/__init__.py",
  "ingest/annotations.py",
  "ingest/decodable.py",
  "ingest/deid.py",
  "ingest/deid_profile.json",
  "ingest/dicom_fast.py",
  "ingest/dicom_ingest.py",
  "ingest/dicom_scan.py",
];
const FORBIDDEN_IMPORTS = /^\s*(import|from)\s+(torch|torchvision|numpy|cryptography|django|chain)\b/m;

function fail(message) {
  console.error(`build-static: ${message}`);
  process.exit(1);
}

function sha256(file) {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function copy(src, dest) {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  if (fs.existsSync(dest) && sha256(src) === sha256(dest)) return false;
  fs.copyFileSync(src, dest);
  return true;
}

function python() {
  const venv = path.join(ROOT, ".venv", "bin", "python");
  return process.env.PYTHON_FOR_STATIC || (fs.existsSync(venv) ? venv : "python3");
}

function pydicomVersion() {
  if (process.env.PYDICOM_VERSION) return process.env.PYDICOM_VERSION;
  try {
    return execFileSync(python(), ["-c", "import pydicom; print(pydicom.__version__)"], {
      encoding: "utf8",
    }).trim();
  } catch (err) {
    fail(`cannot read the venv's pydicom version (run \`make deps\` first): ${err.message}`);
  }
}

// The hashes requirements.lock accepts for pydicom==version: the wheel the browser runs
// passes the same check as the one the CLI's venv installed.
function lockedHashes(name, version) {
  const lock = fs.readFileSync(path.join(ROOT, "requirements.lock"), "utf8");
  const start = lock.search(new RegExp(`^${name}==${version.replace(/\./g, "\\.")} `, "m"));
  if (start < 0) fail(`requirements.lock does not pin ${name}==${version}`);
  const block = lock.slice(start).split(/\n(?=\S)/)[0];
  return new Set([...block.matchAll(/--hash=sha256:([0-9a-f]{64})/g)].map((m) => m[1]));
}

function pydicomWheel(version) {
  const dir = path.join(VENDOR, "wheels");
  const name = `pydicom-${version}-py3-none-any.whl`;
  const target = path.join(dir, name);
  if (!fs.existsSync(target)) {
    fs.mkdirSync(dir, { recursive: true });
    execFileSync(
      python(),
      ["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        `pydicom==${version}`, "-d", dir],
      { stdio: "inherit" },
    );
    if (!fs.existsSync(target)) fail(`pip did not produce ${name} in ${dir}`);
  }
  for (const stale of fs.readdirSync(dir)) {
    if (stale.startsWith("pydicom-") && stale !== name) fs.rmSync(path.join(dir, stale));
  }
  const digest = sha256(target);
  if (!lockedHashes("pydicom", version).has(digest)) {
    fs.rmSync(target);
    fail(`${name} has sha256 ${digest}, which requirements.lock does not list: removed it`);
  }
  return name;
}

function main() {
  if (!fs.existsSync(path.join(PYODIDE_SRC, "pyodide.mjs"))) {
    fail("node_modules/pyodide is missing: run `npm ci` in the repository root first");
  }
  const pyodideVersion = JSON.parse(
    fs.readFileSync(path.join(PYODIDE_SRC, "package.json"), "utf8"),
  ).version;
  const pinned = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"))
    .dependencies.pyodide;
  if (pinned !== pyodideVersion) {
    fail(`node_modules holds pyodide ${pyodideVersion}, package.json pins ${pinned}: run \`npm ci\``);
  }
  let changed = 0;
  for (const file of PYODIDE_FILES) {
    changed += copy(path.join(PYODIDE_SRC, file), path.join(VENDOR, "pyodide", file));
  }

  const files = {};
  for (const file of TRAINING_FILES) {
    const src = path.join(ROOT, "training", file);
    if (file.endsWith(".py") && FORBIDDEN_IMPORTS.test(fs.readFileSync(src, "utf8"))) {
      fail(`training/${file} imports a package Pyodide does not ship here (torch, numpy, ...)`);
    }
    changed += copy(src, path.join(VENDOR, "medchain-py", "training", file));
    files[`training/${file}`] = sha256(src);
  }

  const version = pydicomVersion();
  const wheel = pydicomWheel(version);
  const bundle = {
    pyodide: pyodideVersion,
    wheels: { [wheel]: sha256(path.join(VENDOR, "wheels", wheel)) },
    files,
  };
  const bundlePath = path.join(VENDOR, "medchain-py", "bundle.json");
  const text = JSON.stringify(bundle, null, 1) + "\n";
  if (!fs.existsSync(bundlePath) || fs.readFileSync(bundlePath, "utf8") !== text) {
    fs.writeFileSync(bundlePath, text);
    changed += 1;
  }
  console.log(
    `build-static: pyodide ${pyodideVersion}, ${wheel}, ${TRAINING_FILES.length} training files ` +
      `-> portal/static/vendor/ (${changed} updated)`,
  );
}

main();
