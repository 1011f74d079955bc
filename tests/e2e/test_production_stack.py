"""Integration tests of the production stack, on real parts.

The machine's PostgreSQL (a throwaway database) and Redis; celery, daphne,
anvil and moto_server as child processes started and stopped by PID. The
test plays the members' wallets and an outside relayer on the chain, and
reads the portal's database with plain SQL as an observer: it never opens it
through Django.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from eth_account import Account
from eth_utils import keccak

from chain import eip712
from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 13
WEB_WORKERS = 2
WEB_POOL_MAX = 3


def web_tier_argv(url: str, *, workers: int) -> list[str]:
    """docs/load.md's command: proxy headers off, so DJANGO_NUM_PROXIES alone reads them."""
    port = url.rsplit(":", 1)[1]
    return [str(BIN / "uvicorn"), "portal.asgi:application", "--host", "127.0.0.1",
            "--port", port, "--workers", str(workers), "--lifespan", "off",
            "--no-proxy-headers", "--no-server-header", "--no-access-log"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, ready: Callable[[], Any], timeout: float = 60, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@dataclass
class Processes:
    """Child processes in their own sessions, so a signal to one reaches its pool too."""

    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            self.procs.pop(name)


def manage(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"medchain_e2e_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def anvil(stack_dir: Path) -> Iterator[AnvilNode]:
    node = AnvilNode(state_file=stack_dir / "anvil-state.json", port=free_port())
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def production_env(
    stack_dir: Path, pg_url: str, redis_url: str, anvil: AnvilNode
) -> dict[str, str]:
    """What an operator sets for the portal's processes (secrets as *_FILE)."""
    secret = stack_dir / "django-secret"
    secret.write_text(secrets.token_urlsafe(64))
    # Production refuses anvil's public keys: the relayer is an account of its own, funded here.
    relayer_account = Account.create()
    ChainClient.from_url(anvil.url, relayer_key=ANVIL_DEV_KEYS[0]).fund(
        relayer_account.address, 100 * 10**18
    )
    relayer = stack_dir / "relayer-key"
    relayer.write_text(relayer_account.key.hex())
    database_url = stack_dir / "database-url"
    database_url.write_text(pg_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDCHAIN_", "CHAIN_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "MEDCHAIN_STACK": "production",
            "MEDCHAIN_VAR_DIR": str(stack_dir / "var"),
            "DJANGO_SECRET_KEY_FILE": str(secret),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # TLS ends at the proxy in front of the portal; the test talks to it directly.
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL_FILE": str(database_url),
            "REDIS_URL": redis_url,
            "CHAIN_RPC_URL": anvil.url,
            "CHAIN_RELAYER_KEY_FILE": str(relayer),
            "CELERY_BEAT_SECONDS": "1",
            "NODE_CHECK_IN_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def processes(stack_dir: Path) -> Iterator[Processes]:
    procs = Processes(stack_dir)
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def sql(pg_url: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    conn = psycopg.connect(pg_url, autocommit=True)

    def query(text: str, *params: Any) -> list[tuple[Any, ...]]:
        return conn.execute(text, params).fetchall()  # type: ignore[arg-type]

    yield query
    conn.close()


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def _key(label: str) -> str:
    return "0x" + keccak(text=f"medchain-e2e:{label}").hex()


def _name_hash(name: str) -> str:
    return "0x" + keccak(text=name.strip()).hex()


FOUNDERS = [
    (name, _key(name), "0x" + bytes([0x30 + i]).hex() * 32)
    for i, name in enumerate(["St. Mary's Hospital", "City General", "Northside Clinic"])
]


@dataclass
class Stack:
    env: dict[str, str]
    dir: Path
    processes: Processes
    anvil: AnvilNode
    sql: Callable[..., list[tuple[Any, ...]]]
    registry_address: str = ""
    start_block: int = 0
    web_url: str = ""

    def start_worker(self) -> None:
        if "worker" in self.processes.procs:
            return
        self.processes.start(
            "worker",
            [str(BIN / "celery"), "-A", "portal", "worker", "-Q", "portal", "--pool", "solo",
             "-n", f"portal-{secrets.token_hex(3)}@%h", "--without-gossip", "--without-mingle",
             "--loglevel", "INFO"],
            self.env,
        )  # fmt: skip

    def start_beat(self) -> None:
        self.processes.start(
            "beat",
            [str(BIN / "celery"), "-A", "portal", "beat", "-s", str(self.dir / "beat-schedule"),
             "--loglevel", "INFO"],
            self.env,
        )  # fmt: skip

    def start_web(self) -> str:
        """The web tier as docs/load.md runs it: uvicorn with two worker processes, each with
        a pool of at most WEB_POOL_MAX connections (named web in pg_stat_activity)."""
        if "web" not in self.processes.procs:
            self.web_url = f"http://127.0.0.1:{free_port()}"
            env = {
                **self.env,
                "PGAPPNAME": "medchain-web",
                "DATABASE_POOL_MAX_SIZE": str(WEB_POOL_MAX),
            }
            self.processes.start("web", web_tier_argv(self.web_url, workers=WEB_WORKERS), env)
            wait_for("the web server", lambda: http_status(f"{self.web_url}/health") in (200, 503))
        return self.web_url

    def relayer(self) -> ConsortiumRegistry:
        """The chain as an outside relayer sees it: not the portal's account."""
        client = ChainClient.from_url(self.anvil.url, relayer_key=ANVIL_DEV_KEYS[1])
        return ConsortiumRegistry(client, self.registry_address)

    def wait_sql(self, what: str, query: str, *params: Any, timeout: float = 60) -> Any:
        def ready() -> Any:
            rows = self.sql(query, *params)
            return rows[0] if rows and all(v is not None for v in rows[0]) else None

        try:
            return wait_for(what, ready, timeout=timeout)
        except AssertionError as exc:
            logs = {n: self.processes.log(n) for n in ("worker", "beat", "web", "node")}
            report = "\n".join(f"--- {n}\n{t}" for n, t in logs.items())
            raise AssertionError(f"{exc}\n{report}") from None


@pytest.fixture(scope="module")
def stack(
    production_env: dict[str, str],
    stack_dir: Path,
    processes: Processes,
    anvil: AnvilNode,
    sql: Callable[..., list[tuple[Any, ...]]],
) -> Stack:
    """Migrated PostgreSQL, the registry deployed on anvil, a worker and beat running."""
    env = production_env
    manage(env, "migrate", "--no-input")
    founders = [
        {"name": name, "address": Account.from_key(key).address, "data_key": data_key}
        for name, key, data_key in FOUNDERS
    ]
    manage(env, "deploy_contracts", "--founders", str(write_json(stack_dir / "f.json", founders)))
    ((address, block),) = sql(
        "SELECT address, block_number FROM core_contractdeployment"
        " WHERE name = 'ConsortiumRegistry'"
    )
    s = Stack(env, stack_dir, processes, anvil, sql, registry_address=address, start_block=block)
    s.start_worker()
    s.start_beat()
    s.wait_sql(
        "the worker to mirror the founders",
        "SELECT count(*) FROM consortium_member WHERE status = 'active' "
        "AND chain_member_id IS NOT NULL HAVING count(*) = 3",
    )
    return s


def _sign(key: str, typed: dict[str, Any]) -> bytes:
    return eip712.sign_typed(key, typed)


def _vote_yes(
    registry: Any, domain: dict[str, Any], proposal_id: int, voter: str, key: str
) -> None:
    """``voter``'s yes on ``proposal_id``, signed with ``key`` and relayed."""
    nonce = registry.nonce(voter)
    typed = eip712.typed_for(
        "Vote", **domain, proposal_id=proposal_id, support=True, voter=voter, nonce=nonce
    )
    registry.send_signed("Vote", typed["message"], _sign(key, typed), signer=voter)


def test_it_mirrors_an_admission_through_a_killed_worker_and_a_restarted_chain(stack: Stack):
    registry = stack.relayer()
    chain_id = registry.client.chain_id
    domain = {"chain_id": chain_id, "contract": stack.registry_address}
    applicant_key = _key("applicant")
    applicant = Account.from_key(applicant_key).address
    data_key, name_hash = "0x" + "ab" * 32, _name_hash("Harbour Hospital")
    mary_key, city_key = FOUNDERS[0][1], FOUNDERS[1][1]
    mary, city = Account.from_key(mary_key).address, Account.from_key(city_key).address

    application = eip712.typed_for("Application", 
        **domain, applicant=applicant, role=1, data_key=data_key, name_hash=name_hash,
        nonce=registry.nonce(applicant),
    )  # fmt: skip
    sponsorship = eip712.typed_for("SponsorAdmission", 
        **domain, applicant=applicant, role=1, data_key=data_key, name_hash=name_hash,
        nonce=registry.nonce(mary),
    )  # fmt: skip
    receipt = registry.send_signed(
        "SponsorAdmission",
        {"applicant": applicant, "role": 1, "dataKey": data_key, "nameHash": name_hash},
        _sign(mary_key, sponsorship),
        signer=mary,
        unsigned={"applicantSignature": _sign(applicant_key, application)},
    )
    opened = [e for e in registry.decode_events(receipt) if e.name == "ProposalOpened"]
    proposal_id = int(opened[0].args["proposalId"])
    stack.wait_sql(
        "the worker to mirror the open proposal",
        "SELECT status FROM consortium_proposal WHERE chain_proposal_id = %s AND status = 1",
        proposal_id,
    )

    # The worker dies hard; a vote lands while nobody mirrors.
    stack.processes.kill("worker", signal.SIGKILL)
    _vote_yes(registry, domain, proposal_id, mary, mary_key)

    # The chain node stops gracefully (dumping its state file) and comes back.
    head_before = registry.client.head()
    stack.anvil.stop()
    assert stack.anvil.state_file.exists()
    stack.anvil.start()
    registry = stack.relayer()
    assert registry.client.head() >= head_before
    assert registry.client.w3.eth.get_code(stack.registry_address)

    _vote_yes(registry, domain, proposal_id, city, city_key)
    assert stack.sql(
        "SELECT yes FROM consortium_proposal WHERE chain_proposal_id = %s", proposal_id
    ) == [(0,)], "nothing but the worker mirrors the chain"

    stack.start_worker()
    member_id, status = stack.wait_sql(
        "the restarted worker to mirror the admission",
        "SELECT chain_member_id, status FROM consortium_member "
        "WHERE governance_address = %s AND status = 'active'",
        applicant,
    )
    on_chain = registry.member(member_id)
    assert on_chain.active and on_chain.governance == applicant
    assert stack.sql(
        "SELECT status, yes, no FROM consortium_proposal WHERE chain_proposal_id = %s",
        proposal_id,
    ) == [(2, 2, 0)]
    assert stack.sql("SELECT count(*) FROM consortium_vote") == [(2,)]
    # Every registry event on chain mirrored exactly once, in spite of the kill and restart.
    head = registry.client.head()
    stack.wait_sql(
        "the cursor to reach the head",
        "SELECT last_block FROM core_chainsyncstate WHERE last_block >= %s",
        head,
    )
    logs = registry.client.w3.eth.get_logs(
        {"address": stack.registry_address, "fromBlock": stack.start_block, "toBlock": head}
    )
    assert stack.sql("SELECT count(*) FROM core_chaineventrecord") == [(len(logs),)]


def test_it_checks_a_node_in_through_the_api_from_a_node_worker(stack: Stack):
    stack.start_worker()
    keystore = stack.dir / "node-keystore"
    node_env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "MEDCHAIN_ROLE": "node",
        "MEDCHAIN_VAR_DIR": str(stack.dir / "node-var"),
        "MEDCHAIN_NODE_PASSWORD": "node-secret",
        "CELERY_BROKER_URL": stack.env["REDIS_URL"],
        "PYTHONUNBUFFERED": "1",
    }
    identity = json.loads(manage(node_env, "node_init", "--keystore", str(keystore), "--json"))

    registry = stack.relayer()
    mary_key = FOUNDERS[0][1]
    mary = Account.from_key(mary_key).address
    typed = eip712.typed_for(
        "RegisterNode",
        chain_id=registry.client.chain_id,
        contract=stack.registry_address,
        node_id=identity["node_id"],
        signer=identity["signer_address"],
        data_key=identity["data_public_key"],
        nonce=registry.nonce(mary),
    )
    registry.send_signed(
        "RegisterNode",
        {
            "nodeId": identity["node_id"],
            "signer": identity["signer_address"],
            "dataKey": identity["data_public_key"],
        },
        _sign(mary_key, typed),
        signer=mary,
    )
    stack.wait_sql(
        "the worker to mirror the node",
        "SELECT signer_address FROM nodes_node WHERE node_id = %s AND active",
        identity["node_id"],
    )
    token_file = stack.dir / "node.token"
    manage(stack.env, "node_token", identity["node_id"], "--out", str(token_file))

    portal = stack.start_web()
    stack.processes.start(
        "node",
        [sys.executable, str(ROOT / "manage.py"), "run_node", "--keystore", str(keystore),
         "--portal-url", portal, "--token-file", str(token_file),
         "--rpc-url", stack.env["CHAIN_RPC_URL"],
         "--chain-record", str(Path(stack.env["MEDCHAIN_VAR_DIR"]) / "chain-deployment.json")],
        node_env,
    )  # fmt: skip
    (checked_in,) = stack.wait_sql(
        "the node to check in",
        "SELECT last_check_in FROM nodes_node WHERE node_id = %s",
        identity["node_id"],
        timeout=90,
    )
    assert checked_in is not None
    assert "nodes.check_in" in stack.processes.log("node")
    assert http_status(f"{portal}/health") == 200, stack.processes.log("web")


SIGNED_IN_ADMIN = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from portal.consortium.models import Member, Staff
from portal.core.tokens import api_token_issue
user = get_user_model().objects.create_user("load-admin", password="unused-" + "x" * 20)
Staff.objects.create(user=user, member=Member.objects.get(name=NAME), role="admin")
client = Client()
client.force_login(user)
session = client.cookies["sessionid"].value
print(json.dumps({"token": api_token_issue(user=user)[1], "session": session}))
"""


def test_it_serves_many_requests_and_live_events_from_two_web_workers(stack: Stack):
    from concurrent.futures import ThreadPoolExecutor

    from websockets.sync.client import connect

    stack.start_worker()
    portal = stack.start_web()
    code = SIGNED_IN_ADMIN.replace("NAME", repr(FOUNDERS[0][0]))
    admin = json.loads(manage(stack.env, "shell", "-c", code).strip().splitlines()[-1])

    def members() -> int:
        request = urllib.request.Request(
            f"{portal}/api/v1/members/", headers={"Authorization": f"Token {admin['token']}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert len(json.loads(response.read())["results"]) >= 3
            return int(response.status)

    web_connections = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'medchain-web'"
    )
    peak = 0
    with ThreadPoolExecutor(max_workers=120) as pool:
        answers = [pool.submit(members) for _ in range(240)]
        while not all(a.done() for a in answers):
            peak = max(peak, stack.sql(web_connections)[0][0])
            time.sleep(0.05)
    assert [a.result() for a in answers] == [200] * 240
    # Each worker's pool holds the 120 concurrent requests to its few connections.
    assert 0 < peak <= WEB_WORKERS * WEB_POOL_MAX, peak
    assert (stack.dir / "web.log").read_text().count("Started server process") == WEB_WORKERS

    # A chain event mirrored by the Celery worker reaches a browser's websocket through Redis,
    # whichever web worker holds the socket.
    headers = {"Cookie": f"sessionid={admin['session']}", "Origin": portal}
    with connect(
        portal.replace("http", "ws") + "/ws/chain-sync/", additional_headers=headers
    ) as ws:
        registry = stack.relayer()
        mary_key = FOUNDERS[0][1]
        mary = Account.from_key(mary_key).address
        node_id, signer = _key("ws-node"), Account.from_key(_key("ws-signer")).address
        data_key = "0x" + "cd" * 32
        typed = eip712.typed_for("RegisterNode", 
            chain_id=registry.client.chain_id, contract=stack.registry_address,
            node_id=node_id, signer=signer, data_key=data_key, nonce=registry.nonce(mary),
        )  # fmt: skip
        registry.send_signed("RegisterNode", typed["message"], _sign(mary_key, typed), signer=mary)
        deadline = time.monotonic() + 60
        received = ""
        while "NodeRegistered" not in received and time.monotonic() < deadline:
            received += str(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
    assert "NodeRegistered" in received, stack.processes.log("worker")


def test_it_passes_the_deploy_checks_with_production_settings(production_env: dict[str, str]):
    env = {k: v for k, v in production_env.items() if k != "DJANGO_SECURE_SSL_REDIRECT"}
    out = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert "no issues" in out


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("DJANGO_DEBUG", "true", "DJANGO_DEBUG is refused in production"),
        ("CHAIN_RELAYER_KEY", ANVIL_DEV_KEYS[3], "one of anvil's public development keys"),
    ],
)
def test_it_refuses_weak_production_settings(
    production_env: dict[str, str], variable: str, value: str, reason: str
):
    env = dict(production_env)
    env.pop(f"{variable}_FILE", None)  # a _FILE variant would win over the plain variable
    env[variable] = value
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert reason in result.stderr


def test_it_round_trips_a_file_through_s3_storage(
    production_env: dict[str, str], processes: Processes
):
    import boto3

    port = free_port()
    processes.start("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], {
        **os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"
    })  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    wait_for("moto_server", lambda: http_status(endpoint) == 200)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="medchain-e2e")
    env = {
        **production_env,
        "S3_BUCKET": "medchain-e2e",
        "S3_ENDPOINT_URL": endpoint,
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
    }
    code = (
        "from django.core.files.base import ContentFile\n"
        "from django.core.files.storage import storages\n"
        "s = storages['default']\n"
        "name = s.save('datasets/blob.bin', ContentFile(bytes(range(256)) * 64))\n"
        "data = s.open(name).read()\n"
        "print(type(s).__name__, name, len(data), s.size(name), s.exists(name))\n"
    )
    out = manage(env, "shell", "-c", code).strip().splitlines()[-1].split()
    assert out[0] == "S3Storage"
    assert out[2:] == ["16384", "16384", "True"]
    stored = s3.get_object(Bucket="medchain-e2e", Key=out[1])["Body"].read()
    assert stored == bytes(range(256)) * 64
    processes.kill("moto", signal.SIGTERM)
