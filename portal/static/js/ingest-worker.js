// One de-identification engine (Pyodide running training/'s ingest code) in a Web Worker:
// ingest-pool.js starts a few, so that files are de-identified and the container's chunks
// sealed on several cores, while the page's own thread only puts the container together.
// Messages (structured clones; buffers are transferred, not copied):
//
//   -> {id, op: "ingest", files: [Blob], secret: Uint8Array}
//   <- {id, results: [{ok, parts: [header, pixels], sopUidOriginal, ...} | {ok: false, reason}]}
//   -> {id, op: "annotations", raw: Blob, sizes, uidMap}   <- {id, result}
//   -> {id, op: "canonical", value}                          <- {id, result: Uint8Array}
//   -> {id, op: "seal", key: CryptoKey, datasetId, index, final, plain: Uint8Array}
//   <- {id, record, info: {index, sha256, size}, spare}: medchain-crypto.js sealRecord;
//      `spare` is `plain`'s ArrayBuffer handed back, for the page to fill with the next chunk.
//      Sealing needs no Pyodide.
//   <- {op: "ready"} once loaded, {op: "failed", message} if loading failed,
//      {id, error} when one request failed.

import { sealRecord, toHex } from "./medchain-crypto.js";
import { loadIngestEngine } from "./pyodide-ingest.js";

const engine = loadIngestEngine();
engine.then(
  () => self.postMessage({ op: "ready" }),
  (err) => self.postMessage({ op: "failed", message: err?.message ?? String(err) }),
);

async function ingest({ files, secret }) {
  const loaded = await engine;
  const secretHex = toHex(secret);
  // Read the whole batch at once: the reads proceed while Python works on the first file.
  const contents = files.map((file) => {
    const reading = file.arrayBuffer();
    reading.catch(() => {}); // a failed read is that file's refusal, below
    return reading;
  });
  const results = [];
  const transfer = [];
  for (const [i, pending] of contents.entries()) {
    let result;
    try {
      const bytes = new Uint8Array(await pending);
      result = loaded.ingestParts(bytes, null, secretHex);
      if (result.ok) transfer.push(bytes.buffer, result.parts[0].buffer);
    } catch (err) {
      result = { ok: false, reason: `cannot read the file: ${err?.message ?? err}` };
    }
    results.push(result);
    contents[i] = null;
  }
  return { answer: { results }, transfer };
}

async function annotations({ raw, sizes, uidMap }) {
  const loaded = await engine;
  const result = loaded.annotations(new Uint8Array(await raw.arrayBuffer()), sizes, uidMap);
  return { answer: { result }, transfer: result.ok ? [result.json.buffer] : [] };
}

async function canonical({ value }) {
  const bytes = (await engine).canonicalJson(value);
  return { answer: { result: bytes }, transfer: [bytes.buffer] };
}

async function seal({ key, datasetId, index, final, plain }) {
  const { record, info } = await sealRecord(key, datasetId, index, final, plain);
  return { answer: { record, info, spare: plain.buffer }, transfer: [record.buffer, plain.buffer] };
}

const OPS = { ingest, annotations, canonical, seal };

self.addEventListener("message", async ({ data }) => {
  try {
    const { answer, transfer } = await OPS[data.op](data);
    self.postMessage({ id: data.id, ...answer }, transfer);
  } catch (err) {
    self.postMessage({ id: data.id, error: err?.message ?? String(err) });
  }
});
