// Dataset encryption in the browser, byte for byte as docs/encryption.md (format v1)
// specifies and training/crypto.py implements: the plaintext container, the chunked
// AES-256-GCM stream (1 MiB chunks, a random 12-byte nonce per chunk, dataset id,
// chunk index and final flag bound as associated data) and the X25519 + HKDF-SHA256
// key wrap to a training node. WebCrypto only; nothing here talks to the network.

export const CHUNK_SIZE = 1024 * 1024;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;
export const RECORD_OVERHEAD = NONCE_SIZE + TAG_SIZE;
export const RECORD_SIZE = CHUNK_SIZE + RECORD_OVERHEAD;
export const WRAPPED_KEY_SIZE = 32 + NONCE_SIZE + 32 + TAG_SIZE;
const CONTAINER_MAGIC = new TextEncoder().encode("MCCONT1\n");
const CHUNK_AD_MAGIC = new TextEncoder().encode("MCE1");
const WRAP_INFO_LABEL = new TextEncoder().encode("medchain/wrap/v1");
const utf8 = new TextEncoder();

export function toHex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  const clean = text.startsWith("0x") ? text.slice(2) : text;
  if (clean.length % 2 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`not hex: ${text}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export async function sha256Hex(data) {
  return toHex(await crypto.subtle.digest("SHA-256", data));
}

function concat(parts) {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function u16(n) {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setUint16(0, n);
  return out;
}

function u64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

function encodeId(value, what) {
  const encoded = utf8.encode(value);
  if (encoded.length < 1 || encoded.length > 0xffff) {
    throw new Error(`${what} must be 1 to 65535 UTF-8 bytes`);
  }
  return encoded;
}

/** `"MCE1" || u16 len(id) || id || u64 index || u8 final` (docs/encryption.md). */
export function chunkAssociatedData(datasetId, index, final) {
  const id = encodeId(datasetId, "dataset_id");
  return concat([CHUNK_AD_MAGIC, u16(id.length), id, u64(index), Uint8Array.of(final ? 1 : 0)]);
}

/** HKDF info and AES-GCM associated data of a wrapped key. */
export function wrapInfo(datasetId, nodeId) {
  const ds = encodeId(datasetId, "dataset_id");
  const node = encodeId(nodeId, "node_id");
  return concat([WRAP_INFO_LABEL, u16(ds.length), ds, u16(node.length), node]);
}

/** A fresh 32-byte data key (raw) and its non-extractable WebCrypto handle. */
export async function generateDataKey() {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  return { raw, key: await importDataKey(raw) };
}

export async function importDataKey(raw) {
  if (raw.length !== 32) throw new Error("a data key is 32 bytes (AES-256)");
  return crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt"]);
}

/**
 * Plaintext in, sealed records out, one chunk held at a time (training.crypto.EncryptingWriter).
 *
 * A chunk is sealed as non-final only once a byte beyond it arrives, so the last record
 * (possibly empty, possibly full) is the one `close()` seals. `onRecord(record, info)`
 * receives each record (nonce || ciphertext || tag) with {index, sha256, size}; it is
 * awaited, so a slow consumer slows the producer and memory stays bounded.
 *
 * `seal(index, final, plain)` seals one chunk elsewhere (the upload page: in its workers,
 * ingest-pool.js) and resolves to sealRecord's {record, info}, with the chunk's ArrayBuffer
 * handed back as `spare` to be filled again; `plain` is the sealer's from the call on. By default
 * this thread seals. At most `inFlight` chunks are being sealed at once.
 */
export class ChunkEncryptor {
  constructor(key, datasetId, onRecord, { seal, inFlight = IN_FLIGHT } = {}) {
    chunkAssociatedData(datasetId, 0, false); // validates the id
    this.sealChunk = seal ?? ((i, final, plain) => sealHere(key, datasetId, i, final, plain));
    this.inFlightMax = Math.max(1, inFlight);
    this.onRecord = onRecord;
    this.spare = []; // chunk buffers back from the sealer, to fill again (no fresh pages)
    this.buffer = new Uint8Array(CHUNK_SIZE);
    this.filled = 0;
    this.size = 0;
    this.sealing = 0; // chunks handed to the sealer so far: the next one's index
    this.inFlight = []; // sealed records not yet handed to onRecord, oldest first
    this.chunks = [];
    this.closed = false;
  }

  async write(data) {
    if (this.closed) throw new Error("write to a closed ChunkEncryptor");
    let view = data;
    this.size += data.length;
    while (this.filled + view.length > CHUNK_SIZE) {
      const take = CHUNK_SIZE - this.filled;
      this.buffer.set(view.subarray(0, take), this.filled);
      view = view.subarray(take);
      this.filled = CHUNK_SIZE;
      await this.seal(false);
    }
    this.buffer.set(view, this.filled);
    this.filled += view.length;
  }

  async close() {
    if (!this.closed) {
      await this.seal(true);
      await this.drain(0);
      this.closed = true;
      this.buffer = new Uint8Array(0);
      this.spare = [];
    }
    return this.chunks;
  }

  /**
   * Start sealing the buffered chunk and carry on: the chunk is encrypted and hashed while the
   * caller prepares the next one (de-identification, in the upload page). Records still reach
   * onRecord one at a time, in index order; at most `inFlight` wait.
   */
  async seal(final) {
    const index = this.sealing++;
    const job = this.sealChunk(index, final, this.buffer.subarray(0, this.filled));
    job.catch(() => {}); // surfaces when drained, in order; not as an unhandled rejection
    this.inFlight.push(job);
    this.buffer = this.spare.pop() ?? new Uint8Array(CHUNK_SIZE); // the sealed one is the sealer's
    this.filled = 0;
    await this.drain(this.inFlightMax - 1);
  }

  async drain(keep) {
    while (this.inFlight.length > keep) {
      const { record, info, spare } = await this.inFlight.shift();
      if (spare instanceof ArrayBuffer && spare.byteLength === CHUNK_SIZE) {
        this.spare.push(new Uint8Array(spare));
      }
      this.chunks.push(info);
      await this.onRecord(record, info);
    }
  }
}

const IN_FLIGHT = 4;

/**
 * Seal chunk `index` of a dataset's stream (docs/encryption.md): the record
 * `nonce || AES-256-GCM(key, nonce, plain, AD_index)` and {index, sha256, size}, the SHA-256
 * being the record's, as the manifest lists it. The upload page runs this in its workers.
 */
export async function sealRecord(key, datasetId, index, final, plain) {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_SIZE));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      {
        name: "AES-GCM",
        iv: nonce,
        tagLength: 128,
        additionalData: chunkAssociatedData(datasetId, index, final),
      },
      key,
      plain,
    ),
  );
  const record = concat([nonce, sealed]);
  return { record, info: { index, sha256: await sha256Hex(record), size: record.length } };
}

/** sealRecord on this thread: WebCrypto copies `plain` when called, so its buffer is free. */
async function sealHere(key, datasetId, index, final, plain) {
  const sealing = sealRecord(key, datasetId, index, final, plain);
  return { ...(await sealing), spare: plain.buffer };
}

/** The plaintext container: magic, (name, bytes) records, an end record. */
export class ContainerWriter {
  constructor(sink) {
    this.sink = sink; // an object with async write(Uint8Array)
    this.names = new Set();
    this.started = false;
  }

  async add(name, data) {
    await this.addParts(name, [data]);
  }

  /** One entry whose bytes are `parts` one after another (a header, then Pixel Data). */
  async addParts(name, parts) {
    if (!this.started) {
      await this.sink.write(CONTAINER_MAGIC);
      this.started = true;
    }
    const encoded = utf8.encode(name);
    if (encoded.length < 1 || encoded.length > 0xffff) {
      throw new Error(`entry name must be 1 to 65535 UTF-8 bytes: ${name}`);
    }
    if (this.names.has(name)) throw new Error(`duplicate container entry ${name}`);
    this.names.add(name);
    const size = parts.reduce((n, p) => n + p.length, 0);
    await this.sink.write(concat([u16(encoded.length), encoded, u64(size)]));
    for (const part of parts) await this.sink.write(part);
  }

  async close() {
    if (!this.started) {
      await this.sink.write(CONTAINER_MAGIC);
      this.started = true;
    }
    await this.sink.write(u16(0));
  }
}

/**
 * Wrap `dataKeyRaw` to one node (training.crypto.wrap_key): 92 bytes,
 * `E || nonce || AES-256-GCM(kek, nonce, data_key, AD = info)`.
 */
export async function wrapKey(dataKeyRaw, nodePublicRaw, datasetId, nodeId) {
  if (dataKeyRaw.length !== 32) throw new Error("a data key is 32 bytes (AES-256)");
  if (nodePublicRaw.length !== 32) throw new Error("a node public key is 32 raw bytes (X25519)");
  const nodeKey = await crypto.subtle.importKey("raw", nodePublicRaw, { name: "X25519" }, false, []);
  const ephemeral = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const ephemeralPublic = new Uint8Array(
    await crypto.subtle.exportKey("raw", ephemeral.publicKey),
  );
  const shared = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: nodeKey }, ephemeral.privateKey, 256),
  );
  if (shared.every((b) => b === 0)) throw new Error("the node's public key is a low-order point");
  const info = wrapInfo(datasetId, nodeId);
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  const kek = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: concat([ephemeralPublic, nodePublicRaw]), info },
    ikm,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt"],
  );
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_SIZE));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, tagLength: 128, additionalData: info },
      kek,
      dataKeyRaw,
    ),
  );
  const wrapped = concat([ephemeralPublic, nonce, sealed]);
  if (wrapped.length !== WRAPPED_KEY_SIZE) throw new Error("wrapped key has the wrong size");
  return wrapped;
}
