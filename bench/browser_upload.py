"""The upload page's own pipeline in Debian's chromium against the CLI's, on the same files.

64 CT slices of 512x512 (bench/ingest.py's cached set), chosen in a file input as a steward
chooses them (Files backed by the disk). The browser side runs the page's package step itself
(static/js/package-dataset.js): the CLI's Python de-identification under Pyodide in a pool of
Web Workers (ingest-pool.js, one Pyodide per worker, as many as navigator.hardwareConcurrency
allows up to four, which also seal the container's AES-256-GCM records: medchain-crypto.js),
the annotations re-keyed, the manifest hashed. The CLI side is
``training.ingest.dataset.package_dataset`` on the same files, in one process, as
``upload_dataset`` runs it (the CLI has no parallel mode).

Three page figures per round, each a ratio to the CLI's best in the same run:

- warm: the engines already loaded (the page starts them when the files are chosen, so a
  steward who fills in the rest of the form first waits for none of it);
- cold: from a fresh browser context (empty HTTP and code caches) to the packaged dataset,
  the engines' one-time load included: a steward who presses the button at once;
- one worker: a pool of one, loaded: the per-core comparison with the single-process CLI.

Rounds alternate (page, then CLI); within a round the page's warm and one-worker runs and the
CLI's runs are each the best of REPEATS (a fresh engine's first files run before V8 has
optimised the interpreter's code), and the fastest round counts.
Target (issue 9): warm >= 0.5 x CLI.

Static files are served by a small local HTTP server: no portal, chain or wallet is needed
for what is timed (signing and uploading are the same requests the CLI makes).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402  (bench/ingest.py: the cached slices)

FILES = 64
ROUNDS = 2
REPEATS = 3  # per round, for the page's warm runs and the CLI alike: the machine is shared
RATIO_TARGET = 0.5
UID_SECRET = b"medchain-bench-uid-secret-000000"
DATASET_ID = "00000000-0000-4000-8000-00000b0e5e12"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip

# The page's package step on the chosen files: cold (the pool is created inside the clock),
# then warm on the same pool, then on a pool of one worker (best of REPEATS each).
PAGE_PIPELINE = """async ([secretHex, datasetId, repeats]) => {
  const { IngestPool } = await import("/static/js/ingest-pool.js");
  const { packageDataset } = await import("/static/js/package-dataset.js");
  const { fromHex } = await import("/static/js/medchain-crypto.js");
  const chosen = [...document.getElementById("bench-files").files];
  const annotationFile = chosen.find((f) => f.name === "annotations.json");
  const files = chosen.filter((f) => f !== annotationFile)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const run = async (pool) => {
    const started = performance.now();
    const out = await packageDataset({ files, annotationFile, uidSecret: fromHex(secretHex),
                                       datasetId, skipRefused: false, pool });
    return { seconds: (performance.now() - started) / 1000, refused: out.refused.length,
             records: out.records.length, plaintext: out.manifest.plaintext_size };
  };
  const best = async (pool) => {
    let fastest = null;
    for (let i = 0; i < repeats; i++) {
      const r = await run(pool);
      if (!fastest || r.seconds < fastest.seconds) fastest = r;
    }
    return fastest;
  };
  const started = performance.now();
  const since = () => (performance.now() - started) / 1000;
  const pool = new IngestPool();
  let firstEngine = null;
  pool.first.then(() => { firstEngine = since(); });
  const cold = await run(pool);
  cold.seconds = since();
  await pool.ready();
  const allEngines = since();
  const warm = await best(pool);
  pool.terminate();
  const single = new IngestPool(1);
  await single.ready();
  const one = await best(single);
  single.terminate();
  return { cold, warm, one, workers: pool.size, firstEngine, allEngines };
}"""


class _Handler(SimpleHTTPRequestHandler):
    """portal/static under /static/, the bench's slices under /bench-data/."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def __init__(self, *args: Any, data: Path, **kwargs: Any) -> None:
        self.data = data
        super().__init__(*args, directory=str(ROOT / "portal"), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/bench-data/"):
            return str(self.data / path.removeprefix("/bench-data/").split("?")[0])
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _subset(source: Path, files: int) -> Path:
    """The first ``files`` slices of the cached set, with their annotations."""
    out = source.parent / f"{source.name}-first{files}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = sorted(p.name for p in source.glob("*.dcm"))[:files]
    for name in names:
        shutil.copy(source / name, out / name)
    shutil.copy(source / "annotations.json", out / "annotations.json")
    (out / ".complete").write_text("")
    return out


def _cli_seconds(source: Path) -> float:
    from training.ingest.dataset import package_dataset

    work = Path(tempfile.mkdtemp(prefix="medchain-bench-cli-"))
    try:
        started = time.perf_counter()
        package_dataset(
            source,
            source / "annotations.json",
            work / "pkg",
            dataset_id=DATASET_ID,
            uid_secret=UID_SECRET,
        )
        return time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(*, files: int = FILES) -> dict[str, dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    if not (ROOT / "portal" / "static" / "vendor" / "pyodide" / "pyodide.mjs").exists():
        raise SystemExit("portal/static/vendor/ is missing: run `make static`")
    full, note = ingest.ensure_dataset(ingest.DATA_DIR, files=max(files, ingest.SEED_SLICES))
    source = _subset(full, files)
    names = sorted(p.name for p in source.glob("*.dcm"))
    total = sum((source / n).stat().st_size for n in names)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, data=source))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    page_runs: list[dict[str, Any]] = []
    cli_runs: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                for _ in range(ROUNDS):  # alternated, so a slow spell hits both
                    page_runs.append(_page_round(browser, base, source, names))
                    cli_runs.append(min(_cli_seconds(source) for _ in range(REPEATS)))
            finally:
                browser.close()
    finally:
        server.shutdown()
    return _figures(page_runs, cli_runs, mb=total / 1e6, files=files, note=note)


def _page_round(browser: Any, base: str, source: Path, names: list[str]) -> dict[str, Any]:
    """One fresh browser context (empty caches): the files chosen, then the three page runs."""
    context = browser.new_context(base_url=base)
    try:
        page = context.new_page()
        page.set_default_timeout(600_000)
        page.goto("/static/css/portal.css")  # same origin as the modules; any page will do
        page.evaluate(
            """() => { const input = Object.assign(document.createElement("input"),
                         { type: "file", multiple: true, id: "bench-files" });
                       document.body.append(input); }"""
        )
        paths = [source / n for n in names] + [source / "annotations.json"]
        page.set_input_files("#bench-files", paths)
        result: dict[str, Any] = page.evaluate(
            PAGE_PIPELINE, [UID_SECRET.hex(), DATASET_ID, REPEATS]
        )
        return result
    finally:
        context.close()


def _figures(
    page_runs: list[dict[str, Any]], cli_runs: list[float], *, mb: float, files: int, note: str
) -> dict[str, dict[str, Any]]:
    for run in page_runs:
        for kind in ("cold", "warm", "one"):
            if run[kind]["refused"]:
                raise SystemExit(f"the page refused {run[kind]['refused']} of the bench's files")
    cli_mbps = mb / min(cli_runs)

    def best(kind: str) -> float:
        return mb / min(r[kind]["seconds"] for r in page_runs)

    def runs(kind: str) -> str:
        return ", ".join(f"{mb / r[kind]['seconds']:.1f}" for r in page_runs)

    warm, cold, one = best("warm"), best("cold"), best("one")
    workers = page_runs[0]["workers"]
    loads = ", ".join(f"{r['firstEngine']:.1f}/{r['allEngines']:.1f}" for r in page_runs)
    print(
        f"browser upload bench: {files} files, {mb:,.1f} MB ({note}); "
        f"CLI {cli_mbps:,.1f} MB/s (runs: {', '.join(f'{mb / s:.1f}' for s in cli_runs)}); "
        f"page, {workers} workers, engines loaded: {warm:,.1f} MB/s (runs: {runs('warm')}) = "
        f"{warm / cli_mbps:.3f} x CLI (target >= {RATIO_TARGET}); "
        f"with the one-time load (first/all engines ready after {loads} s): "
        f"{cold:,.1f} MB/s (runs: {runs('cold')}) = "
        f"{cold / cli_mbps:.3f} x; one worker: {one:,.1f} MB/s (runs: {runs('one')}) = "
        f"{one / cli_mbps:.3f} x"
    )
    return {
        "browser_upload_mb_per_s": ingest._entry(warm, cli_mbps, "MB/s"),
        "browser_upload_cold_mb_per_s": ingest._entry(cold, cli_mbps, "MB/s"),
        "browser_upload_one_worker_mb_per_s": ingest._entry(one, cli_mbps, "MB/s"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=FILES)
    args = parser.parse_args()
    print(json.dumps(run(files=args.files), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
