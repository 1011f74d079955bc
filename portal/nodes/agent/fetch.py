"""The training node's side: fetch a granted dataset version, verify it, decrypt it.

Runs in the node's process, which has no database: everything comes through
the REST API with the node's token, and nothing the portal says is taken on its
word: the node reads the chain over its own (read-only) RPC connection, at the
registry addresses pinned in its deployment record, and checks there the
anchor, the owner and the grant. Any mismatch refuses the dataset; the refusal
and its reason are reported to the portal, which logs them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from eth_utils import to_checksum_address

from chain import eip712
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry
from chain.dataset_registry import DatasetRegistry, dataset_id_parts
from chain.deployment import DeploymentRecord
from portal.datasets.manifest import grant_hash, manifest_hash
from portal.nodes.agent.client import NodeClient, PortalError, PortalUnreachable
from portal.nodes.agent.keystore import NodeKeystore
from training.crypto import DecryptionError, WrappedKey, unwrap_key
from training.ingest.dataset import PackageError, chunk_file_name, open_package


class DatasetRefused(Exception):
    """The node will not use this dataset version; the message says why."""


class DatasetClient(NodeClient):
    """The node's REST client, with the dataset routes."""

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PortalUnreachable(f"cannot reach the portal at {self.base_url}: {exc}") from exc
        if not response.ok:
            try:
                body = response.json()
            except ValueError:
                body = {}
            message = body.get("error") or f"HTTP {response.status_code} from {url}"
            raise PortalError(str(message), status=response.status_code, code=body.get("code", ""))
        return response

    def dataset_manifest(self, dataset_id: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version else None
        body = self._get(f"datasets/{dataset_id}/node/manifest/", params).json()
        if not isinstance(body, dict):
            raise PortalError("the portal's manifest answer is not a JSON object")
        return body

    def dataset_chunk(self, dataset_id: str, version: int, index: int) -> bytes:
        return self._get(
            f"datasets/{dataset_id}/node/chunks/{index}/", {"version": version}
        ).content

    def dataset_report(self, dataset_id: str, *, version: int, ok: bool, reason: str) -> None:
        self._post(
            f"datasets/{dataset_id}/node/reports/",
            {"version": version, "outcome": "ok" if ok else "refused", "reason": reason},
        )


@dataclass(frozen=True)
class FetchResult:
    dataset_id: str
    version: int
    folder: Path
    instances: int
    anchor_checked_on_chain: bool


def _refuse_unless(condition: bool, reason: str) -> None:
    if not condition:
        raise DatasetRefused(reason)


def _check_signatures(info: dict[str, Any], record: DeploymentRecord) -> None:
    """Signatures over the pinned chain and contract, whatever domain the portal names."""
    grant = info["grant"]
    typed = eip712.typed_for(
        "AnchorManifest",
        record.chain_id,
        record.datasets,
        dataset_id=info["chain_dataset_id"],
        version=int(info["version"]),
        manifest_hash=info["manifest_sha256"],
        previous=info["previous"],
        nonce=int(info["signature_nonce"]),
    )
    signer = eip712.recover_typed(typed, bytes.fromhex(info["signature"].removeprefix("0x")))
    _refuse_unless(
        signer == to_checksum_address(info["signer_address"]),
        f"the manifest signature is by {signer}, not by {info['signer_address']}",
    )
    grant_typed = eip712.typed_for(
        "RecordGrant",
        record.chain_id,
        record.datasets,
        dataset_id=info["chain_dataset_id"],
        node_id=grant["node_id"],
        grant_hash=grant["grant_hash"],
        nonce=int(grant["signature_nonce"]),
    )
    granter = eip712.recover_typed(grant_typed, bytes.fromhex(grant["signature"][2:]))
    # The owner's governance key or, for its own nodes, a Data delegate: like the manifest's
    # signer, the chain decides who may, and _check_chain finds the grant in force there.
    signer = to_checksum_address(grant.get("signer") or info["owner"]["governance_address"])
    _refuse_unless(granter == signer, f"the grant is signed by {granter}, not by {signer}")


def _check_contracts(info: dict[str, Any], chain: ChainClient, record: DeploymentRecord) -> None:
    anchor = info["anchor"]
    _refuse_unless(
        chain.chain_id == record.chain_id,
        f"this node's RPC follows chain {chain.chain_id}; its deployment record is for chain "
        f"{record.chain_id}",
    )
    _refuse_unless(
        int(anchor["chain_id"]) == record.chain_id,
        f"the portal names chain {anchor['chain_id']}; this node pins chain {record.chain_id}",
    )
    _refuse_unless(
        to_checksum_address(anchor["contract"]) == record.datasets,
        f"the portal names DatasetRegistry {anchor['contract']}; this node pins {record.datasets}",
    )


def _check_owner(info: dict[str, Any], chain: ChainClient, record: DeploymentRecord) -> int:
    """The owner's member id, as the dataset id and the registry say: not as the portal says."""
    member_id, dataset_uuid = dataset_id_parts(info["chain_dataset_id"])
    _refuse_unless(
        str(dataset_uuid) == str(info["dataset_id"]),
        f"the portal's chain id {info['chain_dataset_id']} is not dataset {info['dataset_id']}",
    )
    owner = info["owner"]
    member = ConsortiumRegistry(chain, record.registry).member(member_id)
    _refuse_unless(member.active, f"the owner, member {member_id}, is not active on chain")
    _refuse_unless(
        owner.get("chain_member_id") == member_id
        and to_checksum_address(owner["governance_address"]) == member.governance,
        f"the portal names {owner.get('name', 'a member')} ({owner['governance_address']}) as "
        f"owner; on chain the dataset belongs to member {member_id} ({member.governance})",
    )
    return member_id


def _check_chain(info: dict[str, Any], chain: ChainClient, record: DeploymentRecord) -> None:
    chain_dataset_id = info["chain_dataset_id"]
    member_id = _check_owner(info, chain, record)
    registry = DatasetRegistry(chain, record.datasets)
    _refuse_unless(
        registry.version_of(chain_dataset_id, info["manifest_sha256"]) == int(info["version"]),
        "the manifest hash is not anchored on chain as this dataset version",
    )
    dataset = registry.dataset(chain_dataset_id)
    _refuse_unless(dataset.owner_id == member_id, "the chain names another owner")
    _refuse_unless(not dataset.withdrawn, "the dataset is withdrawn on chain")
    on_chain = registry.grant_of(chain_dataset_id, info["grant"]["node_id"])
    _refuse_unless(
        on_chain.active and "0x" + on_chain.grant_hash.hex() == info["grant"]["grant_hash"],
        "the chain holds no active grant with this hash for this node",
    )


def _download(
    client: DatasetClient,
    info: dict[str, Any],
    folder: Path,
    progress: Callable[[int, int], None] | None,
) -> None:
    chunks = info["manifest"]["chunks"]
    folder.mkdir(parents=True, exist_ok=True)
    for done, entry in enumerate(chunks, start=1):
        index = int(entry["index"])
        path = folder / chunk_file_name(index)
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]:
            continue  # kept from an interrupted fetch
        data = client.dataset_chunk(info["dataset_id"], int(info["version"]), index)
        actual = hashlib.sha256(data).hexdigest()
        _refuse_unless(
            actual == entry["sha256"],
            f"chunk {index} has SHA-256 {actual}; the signed manifest says {entry['sha256']}",
        )
        path.write_bytes(data)
        if progress is not None:
            progress(done, len(chunks))


def _raw_private(keystore: NodeKeystore) -> bytes:
    return keystore.data_private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def fetch_and_verify(
    *,
    client: DatasetClient,
    keystore: NodeKeystore,
    cache_dir: Path,
    dataset_id: str,
    chain: ChainClient,
    record: DeploymentRecord,
    version: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Verify and decrypt a granted version into ``cache_dir/<dataset>/v<n>/``; report it.

    ``chain`` is the node's own read-only connection and ``record`` its pinned deployment
    record. Raises DatasetRefused (after reporting it) when anything fails to verify.
    """
    info = client.dataset_manifest(dataset_id, version)
    number = int(info["version"])
    try:
        result = _fetch(client, keystore, cache_dir, info, chain, record, progress)
    except (DatasetRefused, PackageError, DecryptionError, ValueError, KeyError) as exc:
        reason = str(exc) if isinstance(exc, DatasetRefused | PackageError) else repr(exc)
        client.dataset_report(dataset_id, version=number, ok=False, reason=reason)
        raise DatasetRefused(reason) from exc
    client.dataset_report(
        dataset_id,
        version=number,
        ok=True,
        reason=f"{result.instances} instances verified and decrypted",
    )
    return result


def _fetch(
    client: DatasetClient,
    keystore: NodeKeystore,
    cache_dir: Path,
    info: dict[str, Any],
    chain: ChainClient,
    record: DeploymentRecord,
    progress: Callable[[int, int], None] | None,
) -> FetchResult:
    dataset_id = str(info["dataset_id"])
    node_id = keystore.identity.node_id
    manifest = info["manifest"]
    _refuse_unless(
        manifest_hash(manifest) == info["manifest_sha256"],
        "the manifest does not hash to the anchored manifest hash",
    )
    _refuse_unless(info["grant"]["node_id"] == node_id, "the grant is for another node")
    _check_contracts(info, chain, record)
    _check_signatures(info, record)
    wrapped = bytes.fromhex(info["grant"]["wrapped_key"].removeprefix("0x"))
    _refuse_unless(
        grant_hash(manifest_sha256=info["manifest_sha256"], node_id=node_id, wrapped_key=wrapped)
        == info["grant"]["grant_hash"],
        "the wrapped key does not match the grant hash",
    )
    _check_chain(info, chain, record)
    try:
        data_key = unwrap_key(
            WrappedKey.from_bytes(wrapped),
            _raw_private(keystore),
            dataset_id=dataset_id,
            node_id=node_id,
        )
    except DecryptionError as exc:
        raise DatasetRefused(f"the grant does not open with this node's key: {exc}") from exc
    number = int(info["version"])
    base = Path(cache_dir) / dataset_id
    ciphertext = base / f"v{number}.ciphertext"
    staging = base / f"v{number}.partial"
    final = base / f"v{number}"
    _download(client, info, ciphertext, progress)
    shutil.rmtree(staging, ignore_errors=True)
    instances = 0
    try:
        for name, data in open_package(
            ciphertext, data_key=data_key, dataset_id=dataset_id, manifest=manifest
        ):
            target = staging / name
            _refuse_unless(
                target.resolve().is_relative_to(staging.resolve()),
                f"the container entry {name!r} points outside the dataset folder",
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            instances += name.startswith("instances/")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    staging.replace(final)
    shutil.rmtree(ciphertext, ignore_errors=True)
    return FetchResult(dataset_id, number, final, instances, anchor_checked_on_chain=True)
