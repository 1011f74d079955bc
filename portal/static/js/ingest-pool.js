// A few de-identification engines in Web Workers (ingest-worker.js), so the upload page
// de-identifies and encrypts on as many cores as the machine offers
// (navigator.hardwareConcurrency, at most MAX_WORKERS): its own thread puts the container
// together from what comes back and hands each 1 MiB chunk to the least busy worker to seal.
// Results return in file order, so the container is the one the CLI writes, byte for byte.
//
// Each worker loads its own Pyodide (seconds, once per page): the pool starts when the steward
// chooses the files, the first engine alone, then the others while it works; a worker takes
// files as soon as it is ready, so the first file does not wait for the last engine.

const MAX_WORKERS = 4;
const BATCH = 2; // files per message: fewer crossings, reads overlap the previous file's Python
const PER_WORKER = 2; // batches queued per worker, so none waits for the next one to arrive
const AHEAD = 16; // results held for the consumer at most, beyond those it has taken

export function poolSize() {
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 2, MAX_WORKERS));
}

class Engine {
  /** A worker started once `after` settles (the pool's first engine starts at once). */
  constructor(url, after = Promise.resolve()) {
    this.calls = new Map();
    this.nextId = 0;
    this.sealing = 0; // chunks sent here to seal, not yet back
    this.ready = new Promise((resolve, reject) => {
      this.loaded = { resolve, reject };
    });
    this.ready.catch(() => {}); // reported through the pool
    const start = () => this.start(url);
    after.then(start, start);
  }

  start(url) {
    if (this.failed) return; // stopped before it started
    this.worker = new Worker(url, { type: "module" });
    this.worker.addEventListener("message", ({ data }) => this.receive(data));
    this.worker.addEventListener("error", (event) => {
      event.preventDefault();
      this.fail(event.message || "the de-identification worker could not start");
    });
    this.worker.addEventListener("messageerror", () => this.fail("a worker's answer was lost"));
  }

  receive(data) {
    if (data.op === "ready") {
      this.isReady = true;
      return this.loaded.resolve(this);
    }
    if (data.op === "failed") return this.fail(data.message);
    const call = this.calls.get(data.id);
    this.calls.delete(data.id);
    if (data.error !== undefined) call?.reject(new Error(data.error));
    else call?.resolve(data);
  }

  fail(message) {
    const error = new Error(message);
    this.failed = error;
    this.loaded.reject(error);
    for (const call of this.calls.values()) call.reject(error);
    this.calls.clear();
  }

  call(op, fields, transfer = []) {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, ...fields }, transfer);
    });
  }

  terminate() {
    this.worker?.terminate();
    this.fail("the de-identification engine was stopped");
  }
}

export class IngestPool {
  constructor(size = poolSize()) {
    const url = new URL("./ingest-worker.js", import.meta.url);
    // The others start once the first has loaded: on a busy machine, loading them all at
    // once would delay the first file; the first engine works while they load.
    const first = new Engine(url);
    this.engines = [first];
    for (let i = 1; i < size; i++) this.engines.push(new Engine(url, first.ready));
    // The first engine to load serves single requests (annotations, canonical JSON).
    this.first = Promise.any(this.engines.map((e) => e.ready)).catch((all) => {
      throw all.errors[0];
    });
    this.first.catch(() => {});
  }

  get size() {
    return this.engines.length;
  }

  /** Whether at least one engine has loaded (no wait for the first file). */
  get loaded() {
    return this.engines.some((e) => e.isReady);
  }

  /** Resolves when every engine has loaded (or rejects with the first failure). */
  ready() {
    return Promise.all(this.engines.map((e) => e.ready));
  }

  /**
   * De-identify `files` (Blobs) with the CLI's ingest_file; yields one result per file, in
   * order: {ok: true, parts: [header, pixels], sopUidOriginal, sopUidNew, rows, cols, modality}
   * or {ok: false, reason}. A worker that fails rejects the files it held.
   */
  async *ingest(files, secret) {
    const slots = files.map(() => deferred());
    let dispatched = 0;
    let consumed = 0;
    let stopped = false; // the consumer left early (an error): take no more files
    let wake = deferred();
    const lane = async (engine) => {
      await engine.ready;
      while (dispatched < files.length && !stopped) {
        while (!stopped && dispatched - consumed >= AHEAD + BATCH * PER_WORKER * this.size) {
          await wake.promise;
        }
        if (stopped || dispatched >= files.length) return;
        const start = dispatched;
        const end = Math.min(files.length, start + BATCH);
        dispatched = end;
        try {
          const { results } = await engine.call("ingest", { files: files.slice(start, end), secret });
          results.forEach((result, i) => slots[start + i].resolve(result));
        } catch (err) {
          for (let i = start; i < end; i++) slots[i].reject(err);
          return;
        }
      }
    };
    for (const engine of this.engines) {
      for (let i = 0; i < PER_WORKER; i++) lane(engine).catch(() => {});
    }
    Promise.allSettled(this.engines.map((e) => e.ready)).then((states) => {
      // No engine at all: the files nobody will take fail with the first reason.
      if (states.every((s) => s.status === "rejected")) {
        for (const slot of slots) slot.reject(states[0].reason);
      }
    });
    try {
      for (const slot of slots) {
        yield await slot.promise;
        consumed++;
        wake.resolve();
        wake = deferred();
      }
    } finally {
      stopped = true; // a lane whose engine is still loading takes nothing, and ends
      wake.resolve();
    }
  }

  /**
   * Seal one chunk of the dataset's stream in the loaded engine with the fewest chunks in hand
   * (medchain-crypto.js sealRecord; the ChunkEncryptor's `seal`). `plain`'s buffer moves to the
   * worker and comes back as `spare`. Rejects if that worker fails.
   */
  async seal(key, datasetId, index, final, plain) {
    await this.first;
    const loaded = this.engines.filter((e) => e.isReady && !e.failed);
    if (loaded.length === 0) {
      throw this.engines.find((e) => e.failed)?.failed ?? new Error("no engine has loaded");
    }
    const engine = loaded.reduce((a, b) => (b.sealing < a.sealing ? b : a));
    engine.sealing++;
    try {
      const fields = { key, datasetId, index, final, plain };
      const { record, info, spare } = await engine.call("seal", fields, [plain.buffer]);
      return { record, info, spare };
    } finally {
      engine.sealing--;
    }
  }

  /** training.ingest.annotations on the annotation file (a Blob); see IngestEngine.annotations. */
  async annotations(raw, sizes, uidMap) {
    const { result } = await (await this.first).call("annotations", { raw, sizes, uidMap });
    return result;
  }

  /** training.ingest.dataset.manifest_bytes of `value`. */
  async canonicalJson(value) {
    const { result } = await (await this.first).call("canonical", { value });
    return result;
  }

  terminate() {
    for (const engine of this.engines) engine.terminate();
  }
}

function deferred() {
  const out = {};
  out.promise = new Promise((resolve, reject) => Object.assign(out, { resolve, reject }));
  out.promise.catch(() => {});
  return out;
}

let shared = null;

/**
 * The page's pool, started on first use and kept for later attempts; a pool with a failed
 * engine is dropped, so the next attempt starts afresh.
 */
export function ingestPool() {
  if (shared?.engines.some((e) => e.failed)) {
    shared.terminate();
    shared = null;
  }
  shared ??= new IngestPool();
  return shared;
}
