"""The portal under load: wrk against the production stack, beside a bare Django view.

The bench starts the stack itself: a fresh PostgreSQL database and a Redis database on
the machine's servers, an anvil node, and the web tier as docs/load.md runs it (uvicorn,
one worker per core, each with its psycopg pool). It seeds 3 founding members and 6 nodes
and 20 open admission proposals through the real chain (relayed, signed transactions,
mirrored by chain sync), and 50 datasets with anchored 64-chunk manifests straight into
the database (an upload is a client-side ingest and ~70 chunk requests each: the catalogue
reads only these rows). Then, at 10, 50 and 200 connections, it runs wrk on each main API
route and on the baseline, a bare view (bench/load_urls.py, never in portal.urls) that
reads 50 dataset rows from the same PostgreSQL in the same run.

Goals (issue 10): every route >= 0.5x the bare view's requests/s at 50 connections, and no
errors at 200 (a non-2xx answer, a timeout past 30 s or a socket error all count).

    python bench/load.py [--quick]      # or `make bench` (bench/run.py --only load)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 12
# Debian's wrk, as `make bench` installs it; WRK names another build (a wrapper script works).
WRK = Path(os.environ.get("WRK", "/usr/bin/wrk"))
ROUTES = {
    "members": "/api/v1/members/",
    "datasets": "/api/v1/datasets/",
    "proposals": "/api/v1/proposals/",
    "nodes": "/api/v1/nodes/",
    "health": "/health",
}
BARE = "/bench/bare/"
CONNECTIONS = (10, 50, 200)
RATIO_TARGET = 0.5
MEMBERS, NODES_PER_MEMBER, PROPOSALS, DATASETS, CHUNKS = 3, 2, 20, 50, 64

# wrk prints its summary for people; this prints the parts we keep as one JSON line.
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def run(*, quick: bool = False) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Start the stack, seed it, load it; return (bench.json rows, details)."""
    if not WRK.exists():
        raise SystemExit(
            f"{WRK} is missing: `make bench` installs it (apt-get install wrk), or set WRK"
        )
    seconds = 5 if quick else 20
    work = Path(tempfile.mkdtemp(prefix="medchain-load-"))
    with _stack(work) as (env, url):
        seeded = _seed(env)
        token = seeded.pop("token")
        runs = _load(url, token, seconds=seconds, work=work)
    figures = _figures(runs, seeded["registry_lookup"])
    details = {"seconds_per_run": seconds, "workers": _workers(), "seeded": seeded, "runs": runs}
    return figures, details


def _workers() -> int:
    return os.cpu_count() or 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _stack(work: Path) -> Iterator[tuple[dict[str, str], str]]:
    """A throwaway database, Redis database and anvil node, migrated and deployed, with the
    web tier running; everything is stopped and dropped on the way out."""
    import psycopg
    import redis
    from eth_account import Account

    from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
    from chain.client import ChainClient

    name = f"medchain_load_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    anvil = AnvilNode(state_file=work / "anvil-state.json", port=_free_port())
    web: subprocess.Popen[bytes] | None = None
    try:
        anvil.start()  # inside: a missing anvil binary still drops the database
        relayer = Account.create()  # production refuses anvil's public keys as the relayer
        ChainClient.from_url(anvil.url, relayer_key=ANVIL_DEV_KEYS[0]).fund(
            relayer.address, 1000 * 10**18
        )
        (work / "secret").write_text(secrets.token_urlsafe(64))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDCHAIN_", "CHAIN_"))}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "load_settings",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]),
                "MEDCHAIN_STACK": "production",
                "MEDCHAIN_VAR_DIR": str(work / "var"),
                "DJANGO_SECRET_KEY_FILE": str(work / "secret"),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DJANGO_SECURE_SSL_REDIRECT": "false",
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
                "REDIS_URL": redis_url,
                "CHAIN_RPC_URL": anvil.url,
                "CHAIN_RELAYER_KEY": relayer.key.hex(),
                # Load balancers poll /health anonymously; its per-address throttle would
                # answer wrk's one address with 429s after 120 requests.
                "HEALTH_RATE": "100000000/min",
                "PYTHONUNBUFFERED": "1",
            }
        )
        _manage(env, "migrate", "--no-input")
        founders = [
            {
                "name": f"Load Hospital {i}",
                "address": Account.from_key(_key(f"founder-{i}")).address,
                "data_key": "0x" + bytes([0x50 + i]).hex() * 32,
            }
            for i in range(MEMBERS)
        ]
        (work / "founders.json").write_text(json.dumps(founders))
        _manage(env, "deploy_contracts", "--founders", str(work / "founders.json"))
        port = _free_port()
        web = subprocess.Popen(
            web_tier_argv(port, workers=_workers()),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=(work / "web.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        yield env, f"http://127.0.0.1:{port}"
    finally:
        if web is not None and web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait(timeout=10)
        anvil.stop()
        redis.Redis.from_url(redis_url).flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def web_tier_argv(port: int, *, workers: int) -> list[str]:
    """docs/load.md's web tier (behind a proxy it binds 0.0.0.0 or a unix socket)."""
    return [str(Path(sys.executable).parent / "uvicorn"), "portal.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--lifespan", "off", "--no-proxy-headers", "--no-server-header",
            "--no-access-log"]  # fmt: skip


def _key(label: str) -> str:
    from eth_utils import keccak

    return "0x" + keccak(text=f"medchain-load:{label}").hex()


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _seed(env: dict[str, str]) -> dict[str, Any]:
    """Seed in a child process (Django is set up once per process, with these settings)."""
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--seed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"seeding the load bench failed:\n{result.stderr}")
    seeded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seeded


def _load(url: str, token: str, *, seconds: int, work: Path) -> list[dict[str, Any]]:
    _wait_ready(url)
    script = work / "report.lua"
    script.write_text(WRK_REPORT)
    paths = {"bare": BARE, **ROUTES}
    runs: list[dict[str, Any]] = []
    for path in paths.values():  # warm every worker's imports, pools and caches
        _wrk(url + path, token, connections=10, seconds=1, script=script)
    for connections in CONNECTIONS:
        for name, path in paths.items():
            measured = _wrk(
                url + path, token, connections=connections, seconds=seconds, script=script
            )
            measured["settle_s"] = _settle(url)
            runs.append({"route": name, "path": path, "connections": connections, **measured})
            print(
                f"load bench: {name:>9} c={connections:<3} {measured['req_per_s']:8.1f} req/s "
                f"p50 {measured['p50_ms']:7.1f} p95 {measured['p95_ms']:7.1f} "
                f"p99 {measured['p99_ms']:7.1f} ms, {measured['errors']} errors",
                file=sys.stderr,
            )
    return runs


def _settle(url: str, timeout: float = 180) -> float:
    """Wait for the requests wrk left in flight to finish (the server keeps serving them
    after wrk stops timing), so the next run does not pay for them; seconds waited."""
    started = time.monotonic()
    fast = 0
    while fast < 3 and time.monotonic() - started < timeout:
        begun = time.monotonic()
        with urllib.request.urlopen(url + BARE, timeout=60) as response:
            response.read()
        fast = fast + 1 if time.monotonic() - begun < 0.1 else 0
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def _wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200]
        except OSError as exc:
            detail = str(exc).encode()
        time.sleep(0.5)
    raise SystemExit(f"the web tier at {url} never answered /health 200: {detail!r}")


def _wrk(url: str, token: str, *, connections: int, seconds: int, script: Path) -> dict[str, Any]:
    argv = [str(WRK), "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s",
            "-s", str(script), "-H", f"Authorization: Token {token}", url]  # fmt: skip
    if url.endswith(("/health", BARE)):
        argv[-3:-1] = []  # anonymous, as a load balancer polls it
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "req_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
        "requests": raw["requests"],
        "raw": raw,
    }


def _figures(runs: list[dict[str, Any]], lookup: dict[str, float]) -> dict[str, dict[str, Any]]:
    """bench.json rows: each route against the bare view at the same connections."""

    def at(route: str, connections: int) -> dict[str, Any]:
        return next(r for r in runs if r["route"] == route and r["connections"] == connections)

    figures: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        for connections in (10, 50):
            value, base = at(route, connections)["req_per_s"], at("bare", connections)["req_per_s"]
            figures[f"load_{route}_req_per_s_c{connections}"] = _row(value, base, "req/s")
        value, base = at(route, 50)["p95_ms"], at("bare", 50)["p95_ms"]
        figures[f"load_{route}_p95_ms_c50"] = _row(value, base, "ms")
        errors, bare_errors = at(route, 200)["errors"], at("bare", 200)["errors"]
        figures[f"load_{route}_errors_c200"] = {
            "value": errors, "baseline": bare_errors, "ratio": None, "unit": "errors"
        }  # fmt: skip
    figures["chain_registry_lookup_ms"] = _row(lookup["shared_ms"], lookup["per_thread_ms"], "ms")
    return figures


def _row(value: float, baseline: float, unit: str) -> dict[str, Any]:
    ratio = value / baseline if baseline else None
    return {"value": round(value, 2), "baseline": round(baseline, 2), "ratio": ratio, "unit": unit}


def seed() -> dict[str, Any]:
    """In the child process: chain data through the relayer, mirrored; datasets as rows."""
    import django

    django.setup()
    from portal.core.sync import chain_sync_run

    _seed_chain()
    result = chain_sync_run()
    while result.processed and not result.error:
        result = chain_sync_run()
    if result.error:
        raise SystemExit(f"chain sync failed while seeding: {result.error}")
    datasets = _seed_datasets()
    token = _seed_reader()
    return {
        "token": token,
        "datasets": datasets,
        "registry_lookup": _registry_lookup(),
        **_counts(),
    }


def _seed_chain() -> None:
    from eth_account import Account
    from eth_utils import keccak

    from chain import eip712
    from portal.consortium.services import name_hash
    from portal.core import chain as portal_chain

    registry = portal_chain.registry()
    domain: dict[str, Any] = {"chain_id": registry.client.chain_id, "contract": registry.address}
    founders = [_key(f"founder-{i}") for i in range(MEMBERS)]
    for i in range(MEMBERS * NODES_PER_MEMBER):
        key = founders[i % MEMBERS]
        member = Account.from_key(key).address
        node: dict[str, Any] = {
            "node_id": "0x" + keccak(text=f"load-node-{i}").hex(),
            "signer": Account.from_key(_key(f"node-{i}")).address,
            "data_key": "0x" + keccak(text=f"load-node-data-{i}").hex(),
        }
        typed = eip712.typed_for("RegisterNode", **domain, **node, nonce=registry.nonce(member))
        registry.send_signed(
            "RegisterNode", typed["message"], eip712.sign_typed(key, typed), signer=member
        )
    for i in range(PROPOSALS):
        applicant_key, sponsor_key = _key(f"applicant-{i}"), founders[i % MEMBERS]
        applicant = Account.from_key(applicant_key).address
        sponsor = Account.from_key(sponsor_key).address
        admission: dict[str, Any] = {
            "applicant": applicant,
            "role": 1,
            "data_key": "0x" + keccak(text=f"load-applicant-data-{i}").hex(),
            "name_hash": name_hash(f"Applicant Hospital {i}"),
        }
        application = eip712.typed_for(
            "Application", **domain, **admission, nonce=registry.nonce(applicant)
        )
        sponsorship = eip712.typed_for(
            "SponsorAdmission", **domain, **admission, nonce=registry.nonce(sponsor)
        )
        registry.send_signed(
            "SponsorAdmission",
            sponsorship["message"],
            eip712.sign_typed(sponsor_key, sponsorship),
            signer=sponsor,
            unsigned={"applicantSignature": eip712.sign_typed(applicant_key, application)},
        )


def _seed_datasets() -> int:
    """Anchored datasets with manifests shaped as training/ingest/dataset.py writes them."""
    import hashlib
    import uuid

    from portal.consortium.models import Member
    from portal.datasets.models import Dataset, DatasetVersion
    from training.ingest.dataset import ENCRYPTION, FORMAT_VERSION, MANIFEST_FORMAT

    owners = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk"))
    for i in range(DATASETS):
        owner = owners[i % len(owners)]
        dataset = Dataset.objects.create(
            owner=owner, title=f"Chest CT series {i}", modality="CT", instances=400,
            annotated_instances=380, boxes=512, status=Dataset.Status.ACTIVE,
        )  # fmt: skip
        chunks = [
            {"index": c, "sha256": hashlib.sha256(f"{i}/{c}".encode()).hexdigest(), "size": 1 << 20}
            for c in range(CHUNKS)
        ]
        ciphertext_size = (CHUNKS << 20) + CHUNKS * 28
        manifest = {
            "format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION,
            "dataset_id": str(dataset.pk), "modality": "CT", "instances": 400,
            "annotated_instances": 380, "boxes": 512,
            "annotations": {"name": "annotations.json", "sha256": "0" * 64, "size": 90_000},
            "encryption": ENCRYPTION, "chunk_size": 1 << 20,
            "plaintext_size": CHUNKS << 20, "ciphertext_size": ciphertext_size,
            "chunks": chunks,
        }  # fmt: skip
        digest = "0x" + hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        DatasetVersion.objects.create(
            dataset=dataset, number=1, manifest=manifest, manifest_sha256=digest,
            signature="0x" + "11" * 65, signer_address=owner.governance_address,
            signature_nonce=i, chunk_count=CHUNKS,
            ciphertext_size=ciphertext_size, state=DatasetVersion.State.ANCHORED,
            anchored_tx="0x" + uuid.uuid4().hex * 2, anchored_block=1,
        )  # fmt: skip
    return DATASETS


def _seed_reader() -> str:
    """An admin of the first member with an API token, the way a script reads the API."""
    from django.contrib.auth import get_user_model

    from portal.consortium.models import Member, Staff
    from portal.core.tokens import api_token_issue

    user = get_user_model().objects.create_user("load-reader", password=secrets.token_urlsafe())
    member = Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")[0]
    Staff.objects.create(user=user, member=member, role=Staff.Role.ADMIN)
    return api_token_issue(user=user)[1]


def _counts() -> dict[str, int]:
    from portal.consortium.models import Member, Proposal
    from portal.nodes.models import Node

    return {
        "members": Member.objects.count(),
        "active_members": Member.objects.filter(status=Member.Status.ACTIVE).count(),
        "proposals": Proposal.objects.count(),
        "nodes": Node.objects.count(),
    }


def _registry_lookup(threads: int = 50) -> dict[str, float]:
    """registry() from fresh threads, as ASGI requests call it: the shared wrapper against
    building a client and wrapper per thread (what a per-thread cache did)."""
    import threading

    from django.conf import settings
    from django.db import connection

    from chain.client import ChainClient
    from chain.consortium_registry import ConsortiumRegistry
    from portal.core import chain as portal_chain

    def per_thread() -> None:
        client = ChainClient.from_url(
            settings.CHAIN_RPC_URL, relayer_key=settings.CHAIN_RELAYER_KEY or None
        )
        ConsortiumRegistry(client, portal_chain.deployment().address)

    def timed(work: Any) -> float:
        spent: list[float] = []

        def one() -> None:
            started = time.perf_counter()
            work()
            spent.append(time.perf_counter() - started)
            connection.close()

        for _ in range(threads):
            t = threading.Thread(target=one)
            t.start()
            t.join()
        return 1000 * sorted(spent)[len(spent) // 2]

    portal_chain.registry()
    return {"shared_ms": timed(portal_chain.registry), "per_thread_ms": timed(per_thread)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 s per run instead of 20")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        print(json.dumps(seed()))
        return 0
    figures, details = run(quick=args.quick)
    print(json.dumps({"figures": figures, "details": details}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
