// The browser's package_dataset (training/ingest/dataset.py): de-identify every DICOM file with
// the CLI's own Python code (Pyodide, in the worker pool of ingest-pool.js), re-key the
// annotation file by the new UIDs, and stream the container through AES-256-GCM in 1 MiB
// chunks (WebCrypto), keeping only the ciphertext records, each hashed. The upload page
// (dataset-upload.js) and the bench (bench/browser_upload.py) both run this function.
//
// The workers de-identify ahead; this thread puts their results into the container in file
// order and hands each full chunk to the least busy worker, which seals and hashes it (two
// chunks per worker at once): de-identification, sealing and this thread's copying overlap.
// (A pool of one leaves the sealing to this thread.) Nothing leaves the page here.

import { CHUNK_SIZE, ChunkEncryptor, ContainerWriter, generateDataKey, sha256Hex } from "./medchain-crypto.js";
import { ingestPool } from "./ingest-pool.js";

const MANIFEST_FORMAT = "medchain-dataset/1";
const FORMAT_VERSION = 1;
const ENCRYPTION = "MCE1";
const ANNOTATIONS_NAME = "annotations.json";
// The sealed records wait for the upload (the manifest lists them all; it is signed first).
// The first MEMORY_BYTES stay in this page's memory as they are; the rest go into Blobs of
// BLOB_BYTES (each record a slice), which chromium may page to disk. Handing records to the
// blob registry costs CPU: a Blob per record about as much as sealing it, grouped about half.
const MEMORY_BYTES = 256 * CHUNK_SIZE;
const BLOB_BYTES = 16 * CHUNK_SIZE;
const RECORD_TYPE = "application/octet-stream";

/** A dataset the page cannot package; the message says what to do. */
export class PackageError extends Error {}

const quiet = () => {};

/**
 * Returns {manifest, manifestSha256, records (Uint8Arrays, then Blobs beyond MEMORY_BYTES),
 * dataKey (raw; the caller zeroes it after wrapping), refused: [{path, reason}]}. `files` are
 * Blobs named by `pathOf`, in the order the container takes them. `onStatus(text)`,
 * `onProgress(stage, done, total, text)` with stage "deid" or "encrypt", and
 * `onRefused(refused)` report as it goes.
 */
export async function packageDataset({
  files,
  annotationFile,
  uidSecret,
  datasetId,
  skipRefused,
  pathOf = (file) => file.webkitRelativePath || file.name,
  pool = ingestPool(),
  onStatus = quiet,
  onProgress = quiet,
  onRefused = quiet,
}) {
  if (!pool.loaded) onStatus("Loading the de-identification engine (Python in your browser)…");
  const dataKey = await generateDataKey();
  const records = new RecordStore();
  const encryptor = new ChunkEncryptor(
    dataKey.key,
    datasetId,
    async (record, info) => {
      records.add(record);
      const sealed = info.index + 1;
      onProgress("encrypt", sealed, sealed, `${sealed} · ${mib(records.size)}`);
    },
    // With a single engine this thread seals, as it has little else to do: the two stages
    // still run on two cores.
    pool.size > 1
      ? {
          seal: (index, final, plain) => pool.seal(dataKey.key, datasetId, index, final, plain),
          inFlight: 2 * pool.size,
        }
      : {},
  );
  const container = new ContainerWriter(encryptor);
  const seen = new Map(); // original SOP Instance UID -> {path, rows, cols}
  const uidMap = {};
  const modalities = new Set();
  const refused = [];
  onProgress("deid", 0, files.length);
  let done = 0;
  for await (let result of pool.ingest(files, uidSecret)) {
    const path = pathOf(files[done]);
    if (result.ok && seen.has(result.sopUidOriginal)) {
      const first = seen.get(result.sopUidOriginal).path;
      result = { ok: false, reason: `SOP Instance UID ${result.sopUidOriginal} is also in ${first}` };
    }
    if (!result.ok) {
      refused.push({ path, reason: result.reason });
      onRefused(refused);
    } else {
      seen.set(result.sopUidOriginal, { path, rows: result.rows, cols: result.cols });
      uidMap[result.sopUidOriginal] = result.sopUidNew;
      modalities.add(result.modality);
      // After a refusal that aborts, only look for more refusals: nothing will be kept.
      if (skipRefused || refused.length === 0) {
        await container.addParts(`instances/${result.sopUidNew}.dcm`, result.parts);
      }
    }
    done++;
    onStatus(`De-identified ${path} (${done} of ${files.length})…`);
    onProgress("deid", done, files.length);
  }
  if (refused.length && !skipRefused) {
    throw new PackageError(
      `${refused.length} file(s) refused, nothing was uploaded (see the list below). Remove ` +
        "them, or tick “Leave refused files out”.",
    );
  }
  if (seen.size === 0) throw new PackageError("no DICOM file could be ingested");

  onStatus("Checking the annotation file against the images…");
  const sizes = Object.fromEntries([...seen].map(([uid, s]) => [uid, [s.rows, s.cols]]));
  const annotations = await pool.annotations(annotationFile, sizes, uidMap);
  if (!annotations.ok) throw new PackageError(`annotation file: ${annotations.reason}`);
  await container.add(ANNOTATIONS_NAME, annotations.json);
  await container.close();
  const chunks = await encryptor.close();

  const manifest = {
    format: MANIFEST_FORMAT,
    format_version: FORMAT_VERSION,
    dataset_id: datasetId,
    modality: [...modalities].sort().join("\\"),
    instances: seen.size,
    annotated_instances: annotations.annotated,
    boxes: annotations.boxes,
    annotations: {
      name: ANNOTATIONS_NAME,
      sha256: await sha256Hex(annotations.json),
      size: annotations.json.length,
    },
    encryption: ENCRYPTION,
    chunk_size: CHUNK_SIZE,
    plaintext_size: encryptor.size,
    ciphertext_size: chunks.reduce((n, c) => n + c.size, 0),
    chunks: chunks.map(({ index, sha256, size }) => ({ index, sha256, size })),
  };
  const manifestSha256 = await sha256Hex(await pool.canonicalJson(manifest));
  return { manifest, manifestSha256, records: records.list(), dataKey: dataKey.raw, refused };
}

/** The sealed records, in order: in memory up to MEMORY_BYTES, then Blob slices. */
class RecordStore {
  constructor() {
    this.done = [];
    this.pending = [];
    this.pendingBytes = 0;
    this.size = 0;
  }

  add(record) {
    if (this.size + record.length <= MEMORY_BYTES) {
      this.done.push(record);
      this.size += record.length;
      return;
    }
    this.pending.push(record);
    this.pendingBytes += record.length;
    this.size += record.length;
    if (this.pendingBytes >= BLOB_BYTES) this.flush();
  }

  flush() {
    const blob = new Blob(this.pending, { type: RECORD_TYPE });
    let at = 0;
    for (const record of this.pending) {
      this.done.push(blob.slice(at, at + record.length, RECORD_TYPE));
      at += record.length;
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  list() {
    if (this.pending.length) this.flush();
    return this.done;
  }
}

export function mib(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < CHUNK_SIZE) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / CHUNK_SIZE).toFixed(1)} MiB`;
}
