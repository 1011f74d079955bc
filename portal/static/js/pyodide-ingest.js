// The CLI's own de-identification code (training/ingest/dicom_ingest.py, deid.py, the
// deid_profile.json table, annotations.py) running in the browser under Pyodide,
// so the browser and the CLI cannot drift (DESIGN.md, "De-identification").
//
// Everything is served from this portal's static files (scripts/build-static.mjs
// copies them under vendor/): the pinned Pyodide runtime, the pydicom wheel, and
// our Python files, each checked against the SHA-256 in vendor/medchain-py/bundle.json.

import { sha256Hex, toHex } from "./medchain-crypto.js";

const VENDOR = new URL("../vendor/", import.meta.url);

// Thin Python entry points over the CLI's functions; files go through Pyodide's
// in-memory file system, one DICOM file at a time, and results come back as JSON.
// The page runs these in Web Workers (ingest-worker.js, ingest-pool.js), one Pyodide each.
const GLUE = `
import json, os, sys
from pathlib import Path
sys.path.insert(0, "/medchain")
from training.ingest.annotations import AnnotationError, parse_annotations, remap_uids
from training.ingest.dicom_ingest import IngestRefused, ingest_file

_IN = "/tmp/medchain-in.dcm"
_OUT = "/tmp/medchain-out.bin"

def medchain_ingest(secret_hex):
    # The de-identified header comes back through _OUT; Pixel Data that stays where it lies
    # in the input (the CLI streams it from the file: FileSpan) comes back as its offset and
    # length, for the caller to slice from the bytes it already holds. Only an inflated copy
    # (a deflated file) streams its pixels through _OUT.
    try:
        r = ingest_file(_IN, uid_secret=bytes.fromhex(secret_hex))
        try:
            span = r.pixels
            in_place = span is not None and isinstance(span.source, Path)
            with open(_OUT, "wb") as f:
                if in_place:
                    f.write(r.header)
                else:
                    for block in r.blocks():
                        f.write(block)
        finally:
            r.close()
    except IngestRefused as exc:
        return json.dumps({"ok": False, "reason": exc.reason})
    finally:
        os.unlink(_IN)
    return json.dumps({
        "ok": True, "sopUidOriginal": r.sop_uid_original, "sopUidNew": r.sop_uid_new,
        "rows": r.rows, "cols": r.cols, "modality": r.modality,
        "pixelOffset": span.offset if in_place else 0,
        "pixelLength": span.length if in_place else 0,
    })

def medchain_annotations(sizes_json, uid_map_json):
    with open(_IN, "rb") as f:
        raw = f.read()
    os.unlink(_IN)
    sizes = {uid: (rc[0], rc[1]) for uid, rc in json.loads(sizes_json).items()}
    try:
        ann = remap_uids(parse_annotations(raw, sizes), json.loads(uid_map_json))
    except AnnotationError as exc:
        return json.dumps({"ok": False, "reason": str(exc)})
    with open(_OUT, "wb") as f:
        f.write(ann.to_json())
    boxes = sum(len(b) for b in ann.instances.values())
    annotated = sum(1 for b in ann.instances.values() if b)
    return json.dumps({"ok": True, "boxes": boxes, "annotated": annotated})

def medchain_canonical(text):
    # training.ingest.dataset.manifest_bytes, which the portal hashes and the chain anchors
    m = json.loads(text)
    out = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    with open(_OUT, "wb") as f:
        f.write(out.encode("utf-8"))
`;

async function fetchChecked(url, sha256) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  const data = new Uint8Array(await response.arrayBuffer());
  if (sha256 && (await sha256Hex(data)) !== sha256) {
    throw new Error(`${url} does not match its SHA-256 in bundle.json: rebuild the static files`);
  }
  return data;
}

let loading = null;

/** Load Pyodide, pydicom and our ingest code once per page; resolves to the engine. */
export function loadIngestEngine(onStatus = () => {}) {
  loading ??= load(onStatus).catch((err) => {
    loading = null;
    throw err;
  });
  return loading;
}

async function load(onStatus) {
  onStatus("Loading the de-identification engine (Python in your browser)…");
  const bundleResponse = await fetch(new URL("medchain-py/bundle.json", VENDOR), {
    cache: "no-cache",
    credentials: "same-origin",
  });
  if (!bundleResponse.ok) {
    throw new Error(
      "the de-identification engine is not installed on this portal " +
        "(portal/static/vendor/ is missing: run `make static`)",
    );
  }
  const bundle = await bundleResponse.json();
  const { loadPyodide } = await import(new URL("pyodide/pyodide.mjs", VENDOR).href);
  const pyodide = await loadPyodide({
    indexURL: new URL("pyodide/", VENDOR).href,
    stdout: (line) => console.debug(`[pyodide] ${line}`),
    stderr: (line) => console.debug(`[pyodide] ${line}`),
  });
  onStatus("Loading pydicom and the de-identification profile…");
  const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
  for (const [wheel, sha256] of Object.entries(bundle.wheels)) {
    const data = await fetchChecked(new URL(`wheels/${wheel}`, VENDOR), sha256);
    pyodide.unpackArchive(data, "wheel", { extractDir: sitePackages });
  }
  for (const [name, sha256] of Object.entries(bundle.files)) {
    const data = await fetchChecked(new URL(`medchain-py/${name}`, VENDOR), sha256);
    pyodide.FS.mkdirTree(`/medchain/${name.slice(0, name.lastIndexOf("/"))}`);
    pyodide.FS.writeFile(`/medchain/${name}`, data);
  }
  pyodide.runPython(GLUE);
  return new IngestEngine(pyodide, bundle);
}

/** Hand `bytes` to the in-memory file system without a copy (Emscripten's `canOwn`). */
function writeOwned(FS, path, bytes) {
  const stream = FS.open(path, "w");
  try {
    FS.write(stream, bytes, 0, bytes.length, 0, true);
  } finally {
    FS.close(stream);
  }
}

function readOut(pyodide) {
  const data = pyodide.FS.readFile("/tmp/medchain-out.bin");
  pyodide.FS.unlink("/tmp/medchain-out.bin");
  return data;
}

export class IngestEngine {
  constructor(pyodide, bundle) {
    this.pyodide = pyodide;
    this.bundle = bundle;
    this.ingestFn = pyodide.globals.get("medchain_ingest");
    this.annotationsFn = pyodide.globals.get("medchain_annotations");
    this.canonicalFn = pyodide.globals.get("medchain_canonical");
  }

  /**
   * `training.ingest.dicom_ingest.ingest_file` on one file's bytes: {ok: true, data, sopUidOriginal,
   * sopUidNew, rows, cols, modality} or {ok: false, reason} (the CLI's IngestRefused reason).
   */
  ingest(bytes, uidSecret) {
    const result = this.ingestParts(bytes, uidSecret);
    if (result.ok) {
      const [head, pixels] = result.parts;
      result.data = new Uint8Array(head.length + pixels.length);
      result.data.set(head);
      result.data.set(pixels, head.length);
      delete result.parts;
    }
    return result;
  }

  /**
   * As `ingest`, with the file as `parts`: [de-identified header, Pixel Data value], the second
   * a view of `bytes` itself (no copy) unless the file had to be inflated. `bytes` must not
   * change while the parts are in use.
   */
  ingestParts(bytes, uidSecret, secretHex = toHex(uidSecret)) {
    writeOwned(this.pyodide.FS, "/tmp/medchain-in.dcm", bytes);
    const result = JSON.parse(this.ingestFn(secretHex));
    if (!result.ok) return result;
    const head = readOut(this.pyodide);
    const { pixelOffset, pixelLength } = result;
    if (pixelOffset + pixelLength > bytes.length) {
      throw new Error(`Pixel Data at ${pixelOffset} + ${pixelLength} lies past the file's end`);
    }
    result.parts = [head, bytes.subarray(pixelOffset, pixelOffset + pixelLength)];
    delete result.pixelOffset;
    delete result.pixelLength;
    return result;
  }

  /**
   * Parse the annotation file against the ingested instances and re-key it by their new
   * UIDs (training.ingest.annotations): {ok: true, json, boxes, annotated} or {ok: false, reason}.
   * `sizes`: original UID -> [rows, cols]; `uidMap`: original UID -> new UID.
   */
  annotations(raw, sizes, uidMap) {
    writeOwned(this.pyodide.FS, "/tmp/medchain-in.dcm", raw);
    const result = JSON.parse(this.annotationsFn(JSON.stringify(sizes), JSON.stringify(uidMap)));
    if (result.ok) result.json = readOut(this.pyodide);
    return result;
  }

  /** training.ingest.dataset.manifest_bytes: UTF-8 JSON, sorted keys, no whitespace. */
  canonicalJson(value) {
    this.canonicalFn(JSON.stringify(value));
    return readOut(this.pyodide);
  }
}
