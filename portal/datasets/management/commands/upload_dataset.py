"""The data steward's CLI at the hospital: de-identify, encrypt, sign, upload.

Runs on the hospital's side and talks to the portal only through its REST
API. The work folder keeps the encrypted package, the wrapped keys and the
upload id (never the data key), so running the command again resumes an
interrupted upload where it stopped.

The data key is wrapped only to node keys the chain confirms: each node's
X25519 key is read from the ConsortiumRegistry over the steward's own RPC
connection, at the address pinned in the chain's deployment record (or
``--registry``), never at one the portal names. A portal that lists another
key for a node gets nothing: the command refuses before anything is encrypted.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from eth_account import Account
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

from chain import eip712, uid_secret
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry
from chain.deployment import DeploymentRecord, RecordError
from chain.errors import ChainUnavailable
from chain.keystore import read_keystore
from training.crypto import wrap_key
from training.ingest.annotations import AnnotationError
from training.ingest.dataset import PackageError, RefusedFiles, chunk_file_name, package_dataset

STATE = "upload-state.json"
RPC_ENV = "MEDCHAIN_UPLOAD_RPC_URL"
_PATHS = (
    "source",
    "annotations",
    "token_file",
    "keystore",
    "password_file",
    "grant_keystore",
    "grant_password_file",
    "uid_secret_file",
    "work_dir",
    "chain_record",
)


class Portal:
    """The few API calls the uploader makes; every error becomes one CommandError line."""

    def __init__(self, base_url: str, token: str, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/") + "/api/v1/"
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, self.base + path, timeout=120, **kwargs)
        except requests.RequestException as exc:
            raise CommandError(f"cannot reach the portal at {self.base}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not response.ok:
            message = body.get("error") if isinstance(body, dict) else None
            raise CommandError(message or f"HTTP {response.status_code} from {path}")
        return body

    def every(self, path: str) -> list[Any]:
        """Every row of a paged list route ({count, next, previous, results}), page by page."""
        rows: list[Any] = []
        page = 1
        while True:
            body = self.call("GET", path, params={"page": page, "page_size": 1000})
            rows.extend(body["results"])
            if not body.get("next"):
                return rows
            page += 1


class Command(BaseCommand):
    help = (
        "De-identify and encrypt a folder of DICOM files with its annotation JSON, sign the "
        "manifest and upload it to the portal (re-run to resume an interrupted upload)."
    )
    session_factory = requests.Session

    @staticmethod
    def chain_factory(rpc_url: str) -> ChainClient:
        """The steward's own read-only connection to the chain (tests hand in their chain)."""
        return ChainClient.from_url(rpc_url, relayer_key=None, timeout=30)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, help="folder of DICOM files")
        parser.add_argument("--annotations", type=Path, help="default: SOURCE/annotations.json")
        parser.add_argument("--portal", required=True, help="the portal's URL")
        parser.add_argument("--token", default="", help="API token (or --token-file)")
        parser.add_argument("--token-file", type=Path)
        parser.add_argument(
            "--keystore",
            type=Path,
            required=True,
            help="governance or Data-delegate keystore: signs the manifest and the grants to "
            "the member's own nodes",
        )
        parser.add_argument("--password-file", type=Path, required=True)
        parser.add_argument(
            "--grant-keystore",
            type=Path,
            help="the governance keystore, to sign grants to other members' nodes in this run "
            "if --keystore is a delegate's (left out: those grants are left to the admin)",
        )
        parser.add_argument("--grant-password-file", type=Path)
        parser.add_argument(
            "--node",
            action="append",
            default=[],
            metavar="NODE_ID=DATA_PUBLIC_KEY",
            help="grant this node (repeat); default: the member's own active nodes",
        )
        parser.add_argument(
            "--rpc-url",
            default=os.environ.get(RPC_ENV),
            help=f"a read-only RPC URL of the chain (or {RPC_ENV}): each node's data key is "
            "checked there before the data key is wrapped to it",
        )
        parser.add_argument(
            "--registry",
            help="the ConsortiumRegistry address to read node keys from; default: the one in "
            "--chain-record",
        )
        parser.add_argument(
            "--chain-record",
            type=Path,
            help="the chain's deployment record (JSON: chain_id, registry, datasets); default "
            "MEDCHAIN_CHAIN_RECORD or var/chain-deployment.json",
        )
        parser.add_argument("--title", default="")
        parser.add_argument("--dataset-id", help="an own dataset's id, for a new version")
        parser.add_argument(
            "--uid-secret-file",
            type=Path,
            help="your hospital's UID secret (its admin makes it once with `manage.py "
            "uid_secret`); default: derived here when --keystore or --grant-keystore is the "
            "governance key",
        )
        parser.add_argument("--work-dir", type=Path, help="default: var/uploads/<source hash>")
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bars (for logs and scripts)"
        )
        parser.add_argument(
            "--max-file-bytes",
            type=int,
            default=None,
            help="refuse DICOM files larger than this (default: INGEST_MAX_FILE_BYTES, 1 GiB)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in _PATHS:  # call_command() passes strings through unconverted
            if options.get(name) is not None:
                options[name] = Path(options[name])
        source: Path = options["source"]
        if not source.is_dir():
            raise CommandError(f"{source} is not a folder")
        annotations = options["annotations"] or source / "annotations.json"
        if not annotations.is_file():
            raise CommandError(f"no annotation file at {annotations} (give --annotations)")
        token = options["token"] or _read(options["token_file"], "token file")
        if not token:
            raise CommandError("give the API token with --token or --token-file")
        key = _key(options["keystore"], options["password_file"])
        grant_key = (
            _key(options["grant_keystore"], options["grant_password_file"])
            if options["grant_keystore"]
            else key
        )
        options["grant_key"] = grant_key
        portal = Portal(options["portal"], token, self.session_factory())
        work = options["work_dir"] or _default_work_dir(source)
        work.mkdir(parents=True, exist_ok=True)
        state = _load_state(work)
        self.show_progress = not options["no_progress"]
        if "manifest" not in state:
            state = self._package(source, annotations, work, key, portal, options)
        result = self._upload(portal, work, state, key, grant_key)
        dataset = result["dataset"]
        self.stdout.write(
            f"dataset {dataset['id']} version {dataset['version']['number']} anchored: "
            f"manifest {dataset['version']['manifest_sha256']}, "
            f"tx {dataset['version']['anchored_tx']}"
        )
        if result["upload"]["error"]:
            self.stderr.write(f"warning: {result['upload']['error']}")

    def _package(
        self,
        source: Path,
        annotations: Path,
        work: Path,
        key: str,
        portal: Portal,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        dataset_id = options["dataset_id"] or str(uuid.uuid4())
        try:
            dataset_id = str(uuid.UUID(dataset_id))
        except ValueError:
            raise CommandError(f"--dataset-id {dataset_id!r} is not a UUID") from None
        uid_secret = _uid_secret(options, portal, [key, options.get("grant_key")])
        nodes = _nodes(options["node"], portal)
        _check_node_keys(nodes, _registry(options, self.chain_factory))
        package_dir = work / "package"
        if package_dir.exists():
            for stale in package_dir.iterdir():
                stale.unlink()
            package_dir.rmdir()
        with _progress(enabled=self.show_progress) as progress:
            task = progress.add_task("de-identify + encrypt", total=None)
            try:
                result = package_dataset(
                    source,
                    annotations,
                    package_dir,
                    dataset_id=dataset_id,
                    uid_secret=uid_secret,
                    progress=lambda done, total: progress.update(task, completed=done, total=total),
                    max_file_bytes=options.get("max_file_bytes") or settings.INGEST_MAX_FILE_BYTES,
                )
            except RefusedFiles as exc:
                for refusal in exc.refused:  # one line per file, each with its reason
                    self.stderr.write(f"refused {refusal.path}: {refusal.reason}")
                raise CommandError(
                    f"{len(exc.refused)} file(s) refused (listed above), nothing was uploaded"
                ) from None
            except (PackageError, AnnotationError) as exc:
                raise CommandError(str(exc).replace("\n", " ")) from None
        grants = [
            {
                "node_id": node_id,
                "wrapped_key": "0x"
                + wrap_key(
                    result.data_key,
                    bytes.fromhex(public[2:]),
                    dataset_id=dataset_id,
                    node_id=node_id,
                )
                .to_bytes()
                .hex(),
            }
            for node_id, public in nodes
        ]
        state = {
            "dataset_id": dataset_id,
            "title": options["title"] or source.name,
            "manifest": result.manifest,
            "manifest_sha256": "0x" + result.manifest_sha256,
            "grants": grants,
        }
        _save_state(work, state)
        return state

    def _upload(
        self, portal: Portal, work: Path, state: dict[str, Any], key: str, grant_key: str
    ) -> dict[str, Any]:
        upload = None
        if state.get("upload_id"):
            upload = portal.call("GET", f"datasets/uploads/{state['upload_id']}/")
            if upload["state"] == "committed":
                raise CommandError(f"upload {upload['id']} is already committed")
            if upload["state"] != "open":
                upload = None  # failed or expired: sign and open a new one
        if upload is None:
            upload = self._open(portal, work, state, key, grant_key)
            state["upload_id"] = upload["id"]
            _save_state(work, state)
        sizes = {c["index"]: c["size"] for c in upload["chunks"]}
        with _progress(enabled=self.show_progress) as progress:
            task = progress.add_task(
                "upload",
                total=sum(sizes.values()),
                completed=sum(sizes[i] for i in upload["received"]),
            )
            for index in upload["missing"]:
                data = (work / "package" / chunk_file_name(index)).read_bytes()
                portal.call(
                    "PUT",
                    f"datasets/uploads/{upload['id']}/chunks/{index}/",
                    data=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
                progress.update(task, advance=len(data))
        return dict(portal.call("POST", f"datasets/uploads/{upload['id']}/commit/"))

    def _open(
        self, portal: Portal, work: Path, state: dict[str, Any], key: str, grant_key: str
    ) -> dict[str, Any]:
        signer = Account.from_key(key).address
        keys = {signer: key, Account.from_key(grant_key).address: grant_key}
        typed = portal.call(
            "POST",
            "datasets/uploads/typed-data/",
            json={
                "dataset_id": state["dataset_id"],
                "manifest_sha256": state["manifest_sha256"],
                "signer": signer,
                "grants": state["grants"],
            },
        )
        grants = []
        for g, t, who in zip(state["grants"], typed["grants"], typed["grant_signers"], strict=True):
            if who in keys:
                grants.append({**g, "signature": _sign(keys[who], t)})
                continue
            # Only another member's node takes the governance key; each grant has its own
            # nonce (per dataset and node), so one left out holds up none of the others.
            self.stderr.write(
                f"grant to node {g['node_id']} left out: it is another member's node, so your "
                f"admin signs it with the governance key (POST /api/v1/datasets/"
                f"{state['dataset_id']}/grants/add/, its wrapped key is in {work / STATE})"
            )
        return dict(
            portal.call(
                "POST",
                "datasets/uploads/",
                json={
                    "dataset_id": state["dataset_id"],
                    "title": state["title"],
                    "manifest": state["manifest"],
                    "signer": signer,
                    "signature": _sign(key, typed["manifest"]),
                    "grants": grants,
                },
            )
        )


def _sign(key: str, typed: dict[str, Any]) -> str:
    return "0x" + eip712.sign_typed(key, typed).hex()


def _uid_secret(options: dict[str, Any], portal: Portal, keys: list[str | None]) -> bytes:
    """The member's one UID secret (chain/uid_secret.py): the file given, else derived from
    the governance key if this run holds it; never from a delegate's key, which would give
    each steward another secret."""
    secret_file = options["uid_secret_file"]
    if secret_file:
        try:
            secret = secret_file.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read the UID secret file {secret_file}: {exc}") from None
        if len(secret) < 16:
            raise CommandError(f"{secret_file} holds {len(secret)} bytes: a UID secret has 32")
        return secret
    me = portal.call("GET", "me/")
    governance = ((me or {}).get("member") or {}).get("governance_address", "")
    for key in keys:
        if key and Account.from_key(key).address.lower() == governance.lower():
            return uid_secret.derive(key)
    raise CommandError(
        "give --uid-secret-file: your hospital's UID secret, which its admin makes once with "
        "`manage.py uid_secret --keystore GOVERNANCE.json` (only the governance key derives it; "
        "see docs/ingest.md)"
    )


def _read(path: Path | None, what: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise CommandError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _key(keystore: Path, password_file: Path | None) -> str:
    password = _read(password_file, "password file")
    try:
        return read_keystore(keystore, password)
    except FileNotFoundError:
        raise CommandError(f"no keystore at {keystore}") from None
    except (ValueError, KeyError) as exc:
        raise CommandError(f"cannot unlock {keystore}: {exc}") from None


def _nodes(given: list[str], portal: Portal) -> list[tuple[str, str]]:
    if given:
        pairs = []
        for item in given:
            node_id, _, public = item.partition("=")
            if len(node_id) != 66 or len(public) != 66:
                raise CommandError(
                    f"--node {item!r}: give NODE_ID=DATA_PUBLIC_KEY, both 0x + 64 hex"
                )
            pairs.append((node_id.lower(), public.lower()))
        return pairs
    nodes = [n for n in portal.every("nodes/") if n.get("active")]
    if not nodes:
        raise CommandError(
            "your member has no active training node to grant the data key to: register one "
            "first, or name nodes with --node"
        )
    return [(n["node_id"], n["data_public_key"]) for n in nodes]


def _registry(options: dict[str, Any], connect: Any) -> ConsortiumRegistry:
    """The ConsortiumRegistry over the steward's own RPC, at the pinned address."""
    rpc_url = options.get("rpc_url")
    if not rpc_url:
        raise CommandError(
            f"give a read-only RPC URL of the chain with --rpc-url or {RPC_ENV}: node keys are "
            "checked there, not taken from the portal"
        )
    record = None
    address = options.get("registry")
    if not address:
        path = options.get("chain_record") or Path(settings.CHAIN_DEPLOYMENT_RECORD)
        try:
            record = DeploymentRecord.load(path)
        except RecordError as exc:
            raise CommandError(f"{exc}: give --chain-record or --registry") from None
        address = record.registry
    try:
        chain = connect(rpc_url)
        chain_id = chain.chain_id
    except (ChainUnavailable, OSError, ValueError) as exc:
        raise CommandError(f"cannot reach the chain at --rpc-url: {exc}") from None
    if record is not None and record.chain_id != chain_id:
        raise CommandError(
            f"--rpc-url follows chain {chain_id}, but the deployment record is for chain "
            f"{record.chain_id}"
        )
    try:
        return ConsortiumRegistry(chain, address)
    except ValueError as exc:
        raise CommandError(f"--registry {address!r}: {exc}") from None


def _check_node_keys(nodes: list[tuple[str, str]], registry: ConsortiumRegistry) -> None:
    """Refuse, naming the node, unless the chain registers exactly this data key for it."""
    for node_id, public in nodes:
        on_chain = registry.node(node_id)
        if on_chain.member_id == 0 or not on_chain.active:
            raise CommandError(
                f"node {node_id} is not an active node on chain: refusing to wrap the data key "
                "to it; nothing was uploaded"
            )
        registered = "0x" + on_chain.data_key.hex()
        if registered != public.lower():
            raise CommandError(
                f"node {node_id}: the portal lists data key {public}, but the chain registers "
                f"{registered}; refusing to wrap the data key to it; nothing was uploaded"
            )


def _default_work_dir(source: Path) -> Path:
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return Path(settings.VAR_DIR) / "uploads" / digest


def _load_state(work: Path) -> dict[str, Any]:
    path = work / STATE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        raise CommandError(
            f"{path} is damaged: delete the work folder {work} to start over"
        ) from None
    if not (work / "package").is_dir():
        return {}
    return dict(state)


def _save_state(work: Path, state: dict[str, Any]) -> None:
    tmp = work / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(work / STATE)


def _progress(*, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TransferSpeedColumn(),
        # Quiet too: a disabled bar still prints a blank line on stop when not on a terminal.
        console=None if enabled else Console(quiet=True),
        disable=not enabled,
    )
