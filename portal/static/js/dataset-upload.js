// The dataset upload page: the browser half of the uploader's pipeline
// (training/ingest/dataset.py's package_dataset, then the upload_dataset command's upload).
//
//  1. de-identify each DICOM file with the CLI's own Python code under Pyodide;
//  2. re-key the annotation file by the new UIDs (training/ingest/annotations.py);
//  3. stream the container through AES-256-GCM in 1 MiB chunks (WebCrypto),
//     keeping only ciphertext records, and hash each one;
//  4. check each chosen node's key against the ConsortiumRegistry on chain (read through the
//     wallet's provider, or the configured public RPC), then wrap the data key to it
//     (X25519 + HKDF-SHA256): a key the portal lists but the chain does not register is refused;
//  5. the wallet signs the manifest (and the grants, if it holds the governance key);
//  6. upload the records through the resumable upload API, then commit (anchor).
//
// Plaintext never leaves the page: only the records, the manifest and the wrapped keys
// are sent.

import {
  CHUNK_SIZE,
  ChunkEncryptor,
  ContainerWriter,
  fromHex,
  generateDataKey,
  sha256Hex,
  toHex,
  wrapKey,
} from "./medchain-crypto.js";
import { loadIngestEngine } from "./pyodide-ingest.js";
import { WalletError, hasWallet, requestAccount, signTypedData } from "./wallet.js";

const MANIFEST_FORMAT = "medchain-dataset/1";
const FORMAT_VERSION = 1;
const ENCRYPTION = "MCE1";
const ANNOTATIONS_NAME = "annotations.json";
const CHUNK_ATTEMPTS = 4;
const RESUME_ROUNDS = 3;
const NODE_SELECTOR = "0x7c97e6ec"; // ConsortiumRegistry.node(bytes32)
const WALLET_UNSUPPORTED = 4200; // EIP-1193: the provider does not support the method

class UploadError extends Error {}

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

async function readFile(file) {
  return new Uint8Array(await file.arrayBuffer());
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

async function publicRpc(method, params) {
  const url = form.dataset.publicRpc;
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    credentials: "omit",
  });
  const body = await response.json();
  if (body.error) throw new UploadError(`the public RPC refused ${method}: ${body.error.message}`);
  return body.result;
}

/** A read of the chain through the wallet's provider, else the configured public RPC. */
async function chainRead(method, params) {
  if (hasWallet()) {
    try {
      return await window.ethereum.request({ method, params });
    } catch (err) {
      if (err?.code !== WALLET_UNSUPPORTED || !form.dataset.publicRpc) {
        throw new UploadError(
          `cannot read the nodes' keys on chain: your wallet answered ${method} with ` +
            `"${err?.message ?? err}"` +
            (form.dataset.publicRpc ? "" : " and this portal configures no public RPC URL") +
            "; nothing was encrypted or sent",
        );
      }
    }
  }
  if (!form.dataset.publicRpc) {
    throw new UploadError(
      "cannot read the nodes' keys on chain: no wallet and no public RPC URL; nothing was " +
        "encrypted or sent",
    );
  }
  return publicRpc(method, params);
}

/**
 * Refuse, naming the node, unless the chain registers exactly the key the portal listed:
 * the data key is wrapped to no key the portal alone vouches for.
 */
async function checkNodeKeys(nodes) {
  const registry = form.dataset.registry;
  const chainId = form.dataset.chainId;
  if (!registry || !chainId) {
    throw new UploadError(
      "this portal has no chain deployment record, so the nodes' keys cannot be checked on " +
        "chain; nothing was encrypted or sent",
    );
  }
  const answered = BigInt(await chainRead("eth_chainId", []));
  if (answered !== BigInt(chainId)) {
    throw new UploadError(
      `your wallet is on chain ${answered}, not the consortium's chain ${chainId}: switch ` +
        "networks, then try again; nothing was encrypted or sent",
    );
  }
  for (const node of nodes) {
    const data = NODE_SELECTOR + node.node_id.slice(2);
    const result = String(await chainRead("eth_call", [{ to: registry, data }, "latest"]));
    const hex = result.replace(/^0x/, "");
    if (hex.length < 256) {
      throw new UploadError(`the chain gave no node record for ${node.node_id}; nothing was sent`);
    }
    const memberId = BigInt(`0x${hex.slice(0, 64)}`);
    const dataKey = `0x${hex.slice(128, 192)}`.toLowerCase();
    const active = BigInt(`0x${hex.slice(192, 256)}`) !== 0n;
    if (memberId === 0n || !active) {
      throw new UploadError(
        `node ${node.node_id} is not an active node on chain: refusing to wrap the data key ` +
          "to it; nothing was encrypted or sent",
      );
    }
    if (dataKey !== node.public_key) {
      throw new UploadError(
        `node ${node.node_id}: the portal lists data key ${node.public_key}, but the chain ` +
          `registers ${dataKey}; refusing to wrap the data key to it; nothing was encrypted or sent`,
      );
    }
  }
}

/**
 * De-identify and encrypt: the browser's package_dataset. Returns the unsigned manifest,
 * the ciphertext records (Blobs) and the raw data key (zeroed by the caller after wrapping).
 */
async function packageInBrowser({ files, annotationFile, uidSecret, datasetId, skipRefused }) {
  const engine = await loadIngestEngine((text) => show(text));
  const dataKey = await generateDataKey();
  const records = [];
  let sealedBytes = 0;
  const encryptor = new ChunkEncryptor(dataKey.key, datasetId, async (record, info) => {
    records.push(new Blob([record], { type: "application/octet-stream" }));
    sealedBytes += info.size;
    bar("encrypt", records.length, records.length, `${records.length} · ${mib(sealedBytes)}`);
  });
  const container = new ContainerWriter(encryptor);
  const seen = new Map(); // original SOP Instance UID -> {path, rows, cols}
  const uidMap = {};
  const modalities = new Set();
  const refused = [];
  bar("deid", 0, files.length);
  for (const [done, file] of files.entries()) {
    const path = relativePath(file);
    show(`De-identifying ${path} (${done + 1} of ${files.length})…`);
    let result;
    try {
      result = engine.ingest(await readFile(file), uidSecret);
    } catch (err) {
      result = { ok: false, reason: `cannot read the file: ${err.message ?? err}` };
    }
    if (result.ok && seen.has(result.sopUidOriginal)) {
      const first = seen.get(result.sopUidOriginal).path;
      result = { ok: false, reason: `SOP Instance UID ${result.sopUidOriginal} is also in ${first}` };
    }
    if (!result.ok) {
      refused.push({ path, reason: result.reason });
      showRefusals(refused);
    } else {
      seen.set(result.sopUidOriginal, { path, rows: result.rows, cols: result.cols });
      uidMap[result.sopUidOriginal] = result.sopUidNew;
      modalities.add(result.modality);
      // After a refusal that aborts, only look for more refusals: nothing will be kept.
      if (skipRefused || refused.length === 0) {
        await container.add(`instances/${result.sopUidNew}.dcm`, result.data);
      }
    }
    bar("deid", done + 1, files.length);
  }
  if (refused.length && !skipRefused) {
    throw new UploadError(
      `${refused.length} file(s) refused, nothing was uploaded (see the list below). Remove ` +
        "them, or tick “Leave refused files out”.",
    );
  }
  if (seen.size === 0) throw new UploadError("no DICOM file could be ingested");

  show("Checking the annotation file against the images…");
  const sizes = Object.fromEntries([...seen].map(([uid, s]) => [uid, [s.rows, s.cols]]));
  const annotations = engine.annotations(await readFile(annotationFile), sizes, uidMap);
  if (!annotations.ok) throw new UploadError(`annotation file: ${annotations.reason}`);
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
  const manifestSha256 = await sha256Hex(engine.canonicalJson(manifest));
  return { manifest, manifestSha256, records, dataKey: dataKey.raw, refused };
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
  const secretFile = document.getElementById("uid-secret-file").files[0];
  if (!files.length) throw new UploadError("choose the DICOM files of the dataset");
  if (!annotationFile) throw new UploadError("choose the annotation file (JSON)");
  if (!secretFile) throw new UploadError("choose your hospital's UID secret file");
  const nodes = chosenNodes();
  if (!hasWallet()) await requestAccount(); // throws the wallet's "no wallet" message
  const title = document.getElementById("dataset-title").value.trim();
  const skipRefused = document.getElementById("skip-refused").checked;
  const key = [files.map((f) => `${relativePath(f)}:${f.size}`).join("|"), annotationFile.size,
    secretFile.size, nodes.map((n) => n.node_id).join(","), skipRefused].join("#");

  let job = pending?.key === key ? pending : null;
  if (!job) {
    show("Checking the nodes' keys on chain…");
    await checkNodeKeys(nodes);
    const uidSecret = await readFile(secretFile);
    if (uidSecret.length === 0) throw new UploadError("the UID secret file is empty");
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
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    await run();
  } catch (err) {
    const known = err instanceof UploadError || err instanceof WalletError;
    show(known ? err.message : `Something went wrong: ${err?.message ?? err}`, "error");
    console.error(err);
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
});

button.disabled = false;
