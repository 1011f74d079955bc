// The dataset upload page: the browser half of the uploader's pipeline
// (training/ingest/dataset.py's package_dataset, then the upload_dataset command's upload).
//
//  1. de-identify each DICOM file with the CLI's own Python code under Pyodide, in a pool of
//     Web Workers (package-dataset.js, ingest-pool.js);
//  2. re-key the annotation file by the new UIDs (training/ingest/annotations.py);
//  3. stream the container through AES-256-GCM in 1 MiB chunks (WebCrypto) while the workers
//     de-identify the next files, keeping only ciphertext records, and hash each one;
//  4. check each chosen node's key against the ConsortiumRegistry on chain (read through the
//     wallet's provider, or the configured public RPC), then wrap the data key to it
//     (X25519 + HKDF-SHA256): a key the portal lists but the chain does not register is refused;
//  5. the wallet signs the manifest (and the grants, if it holds the governance key);
//  6. upload the records through the resumable upload API, then commit (anchor).
//
// Plaintext never leaves the page: only the records, the manifest and the wrapped keys
// are sent.

import { CHUNK_SIZE, fromHex, sha256Hex, toHex, wrapKey } from "./medchain-crypto.js";
import { ingestPool } from "./ingest-pool.js";
import { NodeKeyError, checkNodeKeys as checkOnChain } from "./node-keys.js";
import { PackageError, packageDataset } from "./package-dataset.js";
import { KeyError, forget, showError, signingMode, uidSecretBytes } from "./upload-keys.js";
import { WalletError, requestAccount, signTypedData } from "./wallet.js";

const CHUNK_ATTEMPTS = 4;
const RESUME_ROUNDS = 3;

class UploadError extends Error {}

const checkNodeKeys = (nodes) => checkOnChain(nodes, form.dataset);

const form = document.getElementById("dataset-upload");
const statusEl = document.getElementById("upload-status");
const button = document.getElementById("upload-button");

function show(text, kind = "info") {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
  statusEl.setAttribute("role", kind === "error" ? "alert" : "status");
}

function bar(name, done, total, text) {
  const progress = document.getElementById(`${name}-progress`);
  progress.max = Math.max(total, 1);
  progress.value = done;
  document.getElementById(`${name}-count`).textContent = text ?? `${done} / ${total}`;
}

function mib(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < CHUNK_SIZE) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / CHUNK_SIZE).toFixed(1)} MiB`;
}

function showRefusals(refused) {
  const box = document.getElementById("refusals-box");
  const body = document.querySelector("#refusals tbody");
  body.replaceChildren(
    ...refused.map(({ path, reason }) => {
      const row = document.createElement("tr");
      for (const text of [path, reason]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
  box.hidden = refused.length === 0;
}

function csrfToken() {
  return form.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

async function api(method, path, body, { raw = false } = {}) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
  let payload;
  if (raw) {
    headers["Content-Type"] = "application/octet-stream";
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(form.dataset.apiBase + path, {
    method,
    body: payload,
    headers,
    credentials: "same-origin",
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    // reported below
  }
  if (!response.ok) {
    const error = new UploadError(
      answer?.error ?? `the portal answered HTTP ${response.status} to ${method} ${path}`,
    );
    error.status = response.status;
    throw error;
  }
  return answer;
}

function relativePath(file) {
  return file.webkitRelativePath || file.name;
}

function chosenNodes() {
  const nodes = [];
  for (const box of form.querySelectorAll("input[name=node]:checked")) {
    nodes.push({ node_id: box.value.toLowerCase(), public_key: box.dataset.publicKey.toLowerCase() });
  }
  const extra = document.getElementById("extra-nodes").value;
  for (const line of extra.split(/[\n,;]+/).map((l) => l.trim()).filter(Boolean)) {
    const [nodeId, publicKey] = line.split("=").map((s) => s.trim().toLowerCase());
    if (!/^0x[0-9a-f]{64}$/.test(nodeId ?? "") || !/^0x[0-9a-f]{64}$/.test(publicKey ?? "")) {
      throw new UploadError(
        `"${line}": give NODE_ID=DATA_PUBLIC_KEY, both 0x followed by 64 hex digits`,
      );
    }
    if (!nodes.some((n) => n.node_id === nodeId)) nodes.push({ node_id: nodeId, public_key: publicKey });
  }
  if (nodes.length === 0) {
    throw new UploadError(
      "choose at least one training node to grant the data key to: without one, nobody can " +
        "ever decrypt the dataset",
    );
  }
  return nodes;
}

/**
 * De-identify and encrypt (package-dataset.js, in a pool of workers), shown in the progress
 * bars. Returns the unsigned manifest, the ciphertext records (Uint8Arrays or Blobs, each a
 * request body) and the raw data key (zeroed by the caller after wrapping).
 */
function packageInBrowser({ files, annotationFile, uidSecret, datasetId, skipRefused }) {
  return packageDataset({
    files,
    annotationFile,
    uidSecret,
    datasetId,
    skipRefused,
    pathOf: relativePath,
    onStatus: (text) => show(text),
    onProgress: bar,
    onRefused: showRefusals,
  });
}

async function putChunk(uploadId, index, record) {
  let lastError;
  for (let attempt = 1; attempt <= CHUNK_ATTEMPTS; attempt++) {
    try {
      return await api("PUT", `datasets/uploads/${uploadId}/chunks/${index}/`, record, { raw: true });
    } catch (err) {
      lastError = err;
      // A 4xx other than a timeout will not change on a retry.
      if (err.status && err.status < 500 && err.status !== 408 && err.status !== 429) throw err;
      show(`Chunk ${index}: ${err.message}; retrying (${attempt} of ${CHUNK_ATTEMPTS - 1})…`);
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** (attempt - 1)));
    }
  }
  throw lastError;
}

async function sendChunks(upload, records) {
  const sizes = new Map(upload.chunks.map((c) => [c.index, c.size]));
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  let state = upload;
  for (let round = 0; round < RESUME_ROUNDS && state.missing.length; round++) {
    let sent = [...sizes].filter(([i]) => !state.missing.includes(i)).reduce((n, [, s]) => n + s, 0);
    bar("upload", sent, total, mib(sent));
    for (const index of state.missing) {
      show(`Uploading encrypted chunk ${index + 1} of ${sizes.size}…`);
      try {
        await putChunk(upload.id, index, records[index]);
      } catch (err) {
        if (err.status && err.status < 500) throw err;
        break; // the connection is gone: ask the portal what it holds, then resume
      }
      sent += sizes.get(index);
      bar("upload", sent, total, mib(sent));
    }
    state = await api("GET", `datasets/uploads/${upload.id}/`);
  }
  if (state.missing.length) {
    throw new UploadError(
      `${state.missing.length} chunk(s) did not reach the portal; press the button again to ` +
        "resume (the portal keeps the chunks it has until the upload expires)",
    );
  }
}

function showResult(dataset, manifestSha256) {
  const list = document.querySelector("#upload-result dl");
  const version = dataset.version ?? {};
  const rows = [
    ["Dataset", `${dataset.title} (${dataset.id})`],
    ["Owner", dataset.owner?.name ?? ""],
    ["Modality", dataset.modality],
    ["Instances", `${dataset.instances} (${dataset.annotated_instances} annotated, ${dataset.boxes} boxes)`],
    ["Version", String(version.number ?? "")],
    ["Manifest SHA-256", version.manifest_sha256 ?? `0x${manifestSha256}`],
    ["Encrypted chunks", `${version.chunk_count} · ${mib(version.ciphertext_size ?? 0)}`],
    ["Anchor transaction", version.anchored_tx ?? ""],
    ["Block", String(version.anchored_block ?? "")],
  ];
  list.replaceChildren(
    ...rows.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  document.getElementById("upload-result").hidden = false;
}

// A resumed attempt (after a dropped connection) re-uses what was already encrypted and signed.
let pending = null;

async function run() {
  const files = [...document.getElementById("dicom-files").files].sort((a, b) =>
    relativePath(a) < relativePath(b) ? -1 : relativePath(a) > relativePath(b) ? 1 : 0,
  );
  const annotationFile = document.getElementById("annotation-file").files[0];
  const mode = signingMode(); // who signs is settled first: refused before any work
  const uidSecret = await uidSecretBytes();
  if (!files.length) throw new UploadError("choose the DICOM files of the dataset");
  if (!annotationFile) throw new UploadError("choose the annotation file (JSON)");
  const nodes = chosenNodes();
  const title = document.getElementById("dataset-title").value.trim();
  const skipRefused = document.getElementById("skip-refused").checked;
  const key = [files.map((f) => `${relativePath(f)}:${f.size}`).join("|"), annotationFile.size,
    await sha256Hex(uidSecret), nodes.map((n) => n.node_id).join(","), skipRefused, mode].join("#");

  let job = pending?.key === key ? pending : null;
  if (!job) {
    show("Checking the nodes' keys on chain…");
    await checkNodeKeys(nodes);
    showRefusals([]);
    const datasetId = crypto.randomUUID();
    const pkg = await packageInBrowser({ files, annotationFile, uidSecret, datasetId, skipRefused });
    uidSecret.fill(0);
    show("Wrapping the data key to the training nodes…");
    const grants = [];
    for (const node of nodes) {
      const wrapped = await wrapKey(pkg.dataKey, fromHex(node.public_key), datasetId, node.node_id);
      grants.push({ node_id: node.node_id, wrapped_key: `0x${toHex(wrapped)}` });
    }
    pkg.dataKey.fill(0); // only the wrapped copies remain
    job = { key, datasetId, title, grants, ...pkg, uploadId: null };
    pending = job;
  }

  if (!job.uploadId && mode === "demo") {
    show("Opening the upload, signed by the demo keystore…");
    const upload = await api("POST", "datasets/uploads/", {
      dataset_id: job.datasetId,
      title: job.title,
      manifest: job.manifest,
      demo_keystore: true,
      grants: job.grants,
    });
    job.uploadId = upload.id;
  }
  if (!job.uploadId) {
    show("Ready to upload. Confirm in your wallet: sign the manifest…");
    const signer = await requestAccount();
    const typed = await api("POST", "datasets/uploads/typed-data/", {
      dataset_id: job.datasetId,
      manifest_sha256: `0x${job.manifestSha256}`,
      signer,
      grants: job.grants,
    });
    const signature = await signTypedData(typed.manifest, typed.signer);
    const grants = [];
    for (const [i, grant] of job.grants.entries()) {
      // The portal names each grant's signer: this wallet for the member's own nodes.
      if (typed.grant_signers[i].toLowerCase() === signer.toLowerCase()) {
        show(`Confirm in your wallet: sign the grant to node ${grant.node_id.slice(0, 10)}…`);
        grants.push({ ...grant, signature: await signTypedData(typed.grants[i], signer) });
      } else {
        grants.push(grant); // another member's node: the governance key's, or refused by the portal
      }
    }
    show("Opening the upload…");
    const upload = await api("POST", "datasets/uploads/", {
      dataset_id: job.datasetId,
      title: job.title,
      manifest: job.manifest,
      signer,
      signature,
      grants,
    });
    job.uploadId = upload.id;
  }

  const upload = await api("GET", `datasets/uploads/${job.uploadId}/`);
  if (upload.state !== "open") {
    pending = null;
    throw new UploadError(`the upload is ${upload.state}${upload.error ? `: ${upload.error}` : ""}; start again`);
  }
  await sendChunks(upload, job.records);
  show("Anchoring the manifest on chain…");
  const committed = await api("POST", `datasets/uploads/${job.uploadId}/commit/`);
  pending = null;
  showResult(committed.dataset, job.manifestSha256);
  const warning = committed.upload.error ? ` Warning: ${committed.upload.error}` : "";
  show(
    `Uploaded and anchored: version ${committed.dataset.version?.number} of ` +
      `“${committed.dataset.title}”, ${committed.dataset.instances} instances.${warning}`,
    warning ? "error" : "done",
  );
  form.dataset.uploaded = committed.dataset.id;
  forget();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  showError(null);
  try {
    await run();
  } catch (err) {
    const known = [UploadError, PackageError, WalletError, KeyError, NodeKeyError].some(
      (kind) => err instanceof kind,
    );
    const text = known ? err.message : `Something went wrong: ${err?.message ?? err}`;
    show(text, "error");
    showError(text); // beside the button pressed, not only in the progress below
    console.error(err);
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
});

// The engines load (seconds) while the steward fills in the rest of the form.
document.getElementById("dicom-files").addEventListener("change", () => ingestPool());

button.disabled = false;
