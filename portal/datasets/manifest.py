"""Checks and hashes shared by the portal, the uploader's CLI and the training node.

No database access: a node imports this too.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training.crypto import CHUNK_SIZE, RECORD_OVERHEAD, RECORD_SIZE, WRAPPED_KEY_SIZE
from training.ingest.dataset import ENCRYPTION, FORMAT_VERSION, MANIFEST_FORMAT, manifest_bytes

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
GRANT_LABEL = b"medchain-grant/1"


class ManifestInvalid(ValueError):
    """A manifest that cannot be accepted; the message names the field to fix."""


@dataclass(frozen=True)
class ManifestSummary:
    modality: str
    instances: int
    annotated_instances: int
    boxes: int
    chunks: tuple[tuple[int, str, int], ...]  # (index, sha256 hex, size)
    ciphertext_size: int


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """The SHA-256 of the canonical manifest, as the bytes32 anchored on chain."""
    return "0x" + hashlib.sha256(manifest_bytes(manifest)).hexdigest()


def grant_hash(*, manifest_sha256: str, node_id: str, wrapped_key: bytes) -> str:
    """What the chain records for a grant: binds the wrapped key to one version and node."""
    digest = hashlib.sha256(GRANT_LABEL)
    digest.update(bytes.fromhex(manifest_sha256.removeprefix("0x")))
    digest.update(bytes.fromhex(node_id.removeprefix("0x")))
    digest.update(wrapped_key)
    return "0x" + digest.hexdigest()


def parse_wrapped_key(value: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != WRAPPED_KEY_SIZE:
        raise ManifestInvalid(
            f"a wrapped key is {WRAPPED_KEY_SIZE} bytes written as hex "
            "(training.crypto.wrap_key(...).to_bytes())"
        )
    return raw


def _int(manifest: Mapping[str, Any], name: str, *, minimum: int = 0) -> int:
    value = manifest.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestInvalid(f"manifest field {name!r} must be an integer of at least {minimum}")
    return value


def _hex64(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ManifestInvalid(f"{what} must be a SHA-256 as 64 lowercase hex digits")
    return value


def check_manifest(
    manifest: Any, *, dataset_id: uuid.UUID, max_chunk_bytes: int, max_bytes: int
) -> ManifestSummary:
    """The manifest's summary, or ManifestInvalid saying what is wrong with it."""
    if not isinstance(manifest, Mapping):
        raise ManifestInvalid(
            "the manifest must be a JSON object (training.ingest.dataset's manifest)"
        )
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestInvalid(f"manifest field 'format' must be {MANIFEST_FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestInvalid(f"manifest field 'format_version' must be {FORMAT_VERSION}")
    if manifest.get("encryption") != ENCRYPTION:
        raise ManifestInvalid(f"manifest field 'encryption' must be {ENCRYPTION!r}")
    if manifest.get("dataset_id") != str(dataset_id):
        raise ManifestInvalid(
            f"the manifest is for dataset {manifest.get('dataset_id')!r}, not {dataset_id}: "
            "package with the same dataset id you upload to"
        )
    if manifest.get("chunk_size") != CHUNK_SIZE:
        raise ManifestInvalid(f"manifest field 'chunk_size' must be {CHUNK_SIZE}")
    modality = manifest.get("modality")
    if not isinstance(modality, str) or not modality or len(modality) > 64:
        raise ManifestInvalid("manifest field 'modality' must be 1 to 64 characters (e.g. 'CT')")
    instances = _int(manifest, "instances", minimum=1)
    annotated = _int(manifest, "annotated_instances")
    boxes = _int(manifest, "boxes")
    if annotated > instances:
        raise ManifestInvalid("'annotated_instances' cannot exceed 'instances'")
    _int(manifest, "plaintext_size")
    annotations = manifest.get("annotations")
    if not isinstance(annotations, Mapping) or not isinstance(annotations.get("name"), str):
        raise ManifestInvalid("manifest field 'annotations' must be {name, sha256, size}")
    _hex64(annotations.get("sha256"), "'annotations.sha256'")
    _int(annotations, "size", minimum=1)
    chunks = _check_chunks(manifest.get("chunks"), max_chunk_bytes=max_chunk_bytes)
    total = sum(size for _, _, size in chunks)
    if manifest.get("ciphertext_size") != total:
        raise ManifestInvalid("'ciphertext_size' must be the sum of the chunks' sizes")
    if total > max_bytes:
        raise ManifestInvalid(
            f"the dataset is {total} bytes of ciphertext; this portal accepts at most {max_bytes}"
        )
    return ManifestSummary(modality, instances, annotated, boxes, chunks, total)


def _check_chunks(value: Any, *, max_chunk_bytes: int) -> tuple[tuple[int, str, int], ...]:
    if not isinstance(value, list) or not value:
        raise ManifestInvalid("manifest field 'chunks' must be a non-empty list")
    out: list[tuple[int, str, int]] = []
    for position, entry in enumerate(value):
        if not isinstance(entry, Mapping) or entry.get("index") != position:
            raise ManifestInvalid(
                f"chunk entry {position} must be {{index: {position}, sha256, size}}: "
                "chunks are numbered 0, 1, 2, ... without gaps"
            )
        sha = _hex64(entry.get("sha256"), f"chunk {position}'s 'sha256'")
        size = _int(entry, "size", minimum=RECORD_OVERHEAD)
        last = position == len(value) - 1
        if size > RECORD_SIZE or (not last and size != RECORD_SIZE):
            raise ManifestInvalid(
                f"chunk {position} is {size} bytes: every chunk but the last is {RECORD_SIZE}"
            )
        if size > max_chunk_bytes:
            raise ManifestInvalid(
                f"chunk {position} is {size} bytes; this portal accepts at most "
                f"{max_chunk_bytes} per chunk"
            )
        out.append((position, sha, size))
    return tuple(out)
