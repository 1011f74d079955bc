"""A whole dataset packaged on the uploader's side: ingest, encrypt, list (docs/encryption.md).

``package_dataset`` walks a folder of DICOM files, de-identifies each one
(``training.ingest.dicom_ingest``), re-keys the annotation file by the new UIDs,
and streams the container (instances, then ``annotations.json``) through
the chunked AES-256-GCM encryptor into one file per ciphertext chunk. It
returns the unsigned manifest that others sign and anchor. One DICOM header
and one chunk are held at a time, Pixel Data streams from its file in 1 MiB
blocks: memory grows neither with the dataset nor with a file (docs/ingest.md).

``open_package`` is the reverse, for a node that holds the data key.
No torch, Django or ``chain`` import: this runs in the uploader's process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from training.crypto import (
    CHUNK_SIZE,
    RECORD_SIZE,
    ChunkInfo,
    ContainerWriter,
    DecryptionError,
    EncryptingWriter,
    decrypt_records,
    generate_data_key,
    iter_container,
)
from training.ingest.annotations import AnnotationError, parse_annotations, remap_uids
from training.ingest.dicom_ingest import IngestedInstance, IngestRefused, ingest_file
from training.ingest.dicom_scan import DEFAULT_MAX_FILE_BYTES

MANIFEST_FORMAT = "medchain-dataset/1"
FORMAT_VERSION = 1
ENCRYPTION = "MCE1"  # docs/encryption.md: chunked AES-256-GCM, format v1
ANNOTATIONS_NAME = "annotations.json"
INSTANCE_PREFIX = "instances/"
MANIFEST_NAME = "manifest.json"
_CHUNK_DIGITS = 8


class PackageError(Exception):
    """A dataset that cannot be packaged or opened; the message says what to fix."""


class RefusedFiles(PackageError):
    """Files that cannot enter the dataset, each with its reason."""

    def __init__(self, refused: Iterable[Refusal]) -> None:
        self.refused = tuple(refused)
        listing = "\n".join(f"  {r.path}: {r.reason}" for r in self.refused)
        super().__init__(f"{len(self.refused)} file(s) refused, nothing was written:\n{listing}")


class ChunkMismatch(PackageError):
    """A ciphertext chunk that is missing or differs from the manifest."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"chunk {index} ({chunk_file_name(index)}): {reason}")
        self.index = index


@dataclass(frozen=True)
class Refusal:
    path: str  # relative to the source folder, POSIX separators
    reason: str


@dataclass(frozen=True)
class PackageResult:
    dataset_id: str
    instances: int
    annotated_instances: int
    boxes: int
    modality: str
    chunks: tuple[ChunkInfo, ...]
    annotation_sha256: str
    plaintext_size: int
    ciphertext_size: int
    data_key: bytes
    manifest: dict[str, Any]
    manifest_sha256: str
    refused: tuple[Refusal, ...] = ()


def chunk_file_name(index: int) -> str:
    """Chunk ``index`` of a package is the file ``<index, 8 digits>.chunk``."""
    return f"{index:0{_CHUNK_DIGITS}d}.chunk"


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Canonical encoding to sign and hash: UTF-8 JSON, sorted keys, no whitespace."""
    return json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(manifest_bytes(manifest)).hexdigest()


def package_dataset(
    source_dir: str | Path,
    annotations_path: str | Path,
    out_dir: str | Path,
    *,
    dataset_id: str,
    uid_secret: bytes,
    data_key: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    skip_refused: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> PackageResult:
    """De-identify and encrypt every DICOM file under ``source_dir`` into ``out_dir``.

    A file larger than ``max_file_bytes`` is refused (docs/ingest.md).

    Any refused file aborts with :class:`RefusedFiles` listing every refusal,
    unless ``skip_refused``: then refused files are left out and listed in
    the result. A bad annotation file raises :class:`AnnotationError`. On any
    failure ``out_dir`` is left as it was (absent or empty); on success it
    holds the chunk files and ``manifest.json``.
    """
    source = Path(source_dir)
    annotations_file = Path(annotations_path)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PackageError(f"{out} exists and is not an empty folder")
    paths = _dicom_paths(source, exclude=annotations_file)
    if not paths:
        raise PackageError(f"no files under {source}")
    raw_annotations = annotations_file.read_bytes()
    key = generate_data_key() if data_key is None else data_key
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        result = _package_into(
            staging,
            source=source,
            paths=paths,
            raw_annotations=raw_annotations,
            dataset_id=dataset_id,
            uid_secret=uid_secret,
            key=key,
            progress=progress,
            skip_refused=skip_refused,
            max_file_bytes=max_file_bytes,
        )
        staging.replace(out)  # an empty out_dir is replaced atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


@dataclass
class _Seen:
    path: str
    rows: int
    cols: int


def _package_into(
    staging: Path,
    *,
    source: Path,
    paths: list[Path],
    raw_annotations: bytes,
    dataset_id: str,
    uid_secret: bytes,
    key: bytes,
    progress: Callable[[int, int], None] | None,
    skip_refused: bool,
    max_file_bytes: int,
) -> PackageResult:
    chunk_files = _ChunkFiles(staging)
    sink = EncryptingWriter(chunk_files, key=key, dataset_id=dataset_id)
    container = _CountingWriter(sink)
    writer = ContainerWriter(container)
    seen: dict[str, _Seen] = {}  # original SOP Instance UID -> where and how big
    uid_map: dict[str, str] = {}
    modalities: set[str] = set()
    refused: list[Refusal] = []
    try:
        for done, path in enumerate(paths, start=1):
            rel = path.relative_to(source).as_posix()
            try:
                instance = ingest_file(path, uid_secret=uid_secret, max_file_bytes=max_file_bytes)
            except IngestRefused as exc:
                refused.append(Refusal(path=rel, reason=exc.reason))
            else:
                try:
                    _add_instance(
                        writer, instance, rel=rel, seen=seen, refused=refused, keep=skip_refused
                    )
                finally:
                    instance.close()
                if instance.sop_uid_original in seen:
                    uid_map[instance.sop_uid_original] = instance.sop_uid_new
                    modalities.add(instance.modality)
                del instance
            if progress is not None:
                progress(done, len(paths))
        if refused and not skip_refused:
            raise RefusedFiles(refused)
        if not seen:
            raise PackageError(f"no DICOM file under {source} could be ingested")
        sizes = {uid: (s.rows, s.cols) for uid, s in seen.items()}
        annotations = remap_uids(parse_annotations(raw_annotations, sizes), uid_map)
        annotation_json = annotations.to_json()
        writer.add(ANNOTATIONS_NAME, annotation_json)
        writer.close()
        chunks = tuple(sink.close())
    finally:
        chunk_files.close()
    boxes = sum(len(b) for b in annotations.instances.values())
    annotated = sum(1 for b in annotations.instances.values() if b)
    annotation_sha256 = hashlib.sha256(annotation_json).hexdigest()
    modality = "\\".join(sorted(modalities))
    ciphertext_size = sum(c.size for c in chunks)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset_id": dataset_id,
        "modality": modality,
        "instances": len(seen),
        "annotated_instances": annotated,
        "boxes": boxes,
        "annotations": {
            "name": ANNOTATIONS_NAME,
            "sha256": annotation_sha256,
            "size": len(annotation_json),
        },
        "encryption": ENCRYPTION,
        "chunk_size": CHUNK_SIZE,
        "plaintext_size": container.size,
        "ciphertext_size": ciphertext_size,
        "chunks": [{"index": c.index, "sha256": c.sha256, "size": c.size} for c in chunks],
    }
    (staging / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
    return PackageResult(
        dataset_id=dataset_id,
        instances=len(seen),
        annotated_instances=annotated,
        boxes=boxes,
        modality=modality,
        chunks=chunks,
        annotation_sha256=annotation_sha256,
        plaintext_size=container.size,
        ciphertext_size=ciphertext_size,
        data_key=key,
        manifest=manifest,
        manifest_sha256=manifest_sha256(manifest),
        refused=tuple(refused),
    )


def _add_instance(
    writer: ContainerWriter,
    instance: IngestedInstance,
    *,
    rel: str,
    seen: dict[str, _Seen],
    refused: list[Refusal],
    keep: bool,
) -> None:
    """Stream one ingested file into the container, or record why it is refused."""
    first = seen.get(instance.sop_uid_original)
    if first is not None:
        reason = f"SOP Instance UID {instance.sop_uid_original} is also in {first.path}"
        refused.append(Refusal(path=rel, reason=reason))
        return
    seen[instance.sop_uid_original] = _Seen(rel, instance.rows, instance.cols)
    # After a refusal that aborts, only look for more refusals: nothing will be kept.
    if keep or not refused:
        name = f"{INSTANCE_PREFIX}{instance.sop_uid_new}.dcm"
        try:
            writer.add_blocks(name, instance.size, instance.blocks())
        except IngestRefused as exc:  # the file changed after it was checked
            raise PackageError(f"{rel}: {exc.reason}") from exc


def open_package(
    out_dir: str | Path, *, data_key: bytes, dataset_id: str, manifest: Mapping[str, Any]
) -> Iterator[tuple[str, bytes]]:
    """The container's (name, bytes) records, after every chunk matched the manifest.

    All chunk files are hashed before this returns, so a missing, extra or
    altered chunk raises :class:`ChunkMismatch` naming it and nothing is
    decrypted. Decryption then re-checks each chunk as it reads it (the files
    may change in between), and the annotation file is checked against the
    manifest's hash. ``manifest`` must be the signed one, not a file beside
    the chunks.
    """
    folder = Path(out_dir)
    chunks = _manifest_chunks(manifest, dataset_id=dataset_id)
    for chunk in chunks:
        _verify_chunk_file(folder, chunk)
    extra = sorted(
        p.name
        for p in folder.glob("*.chunk")
        if p.name not in {chunk_file_name(c.index) for c in chunks}
    )
    if extra:
        raise PackageError(f"chunk file(s) not in the manifest: {', '.join(extra)}")
    return _open_records(folder, chunks, key=data_key, dataset_id=dataset_id, manifest=manifest)


def _open_records(
    folder: Path,
    chunks: list[ChunkInfo],
    *,
    key: bytes,
    dataset_id: str,
    manifest: Mapping[str, Any],
) -> Iterator[tuple[str, bytes]]:
    records = ((folder / chunk_file_name(c.index)).read_bytes() for c in chunks)
    try:
        plaintext = decrypt_records(records, key=key, dataset_id=dataset_id, chunks=chunks)
        instances = 0
        annotations_seen = False
        for name, data in iter_container(_JoinedReader(plaintext)):
            if name == ANNOTATIONS_NAME:
                _check_annotations(data, manifest["annotations"])
                annotations_seen = True
            elif name.startswith(INSTANCE_PREFIX):
                instances += 1
            yield name, data
    except DecryptionError as exc:
        raise PackageError(f"the package does not decrypt: {exc}") from exc
    if not annotations_seen:
        raise PackageError(f"the package has no {ANNOTATIONS_NAME}")
    if instances != manifest["instances"]:
        raise PackageError(
            f"the package holds {instances} instances; the manifest lists {manifest['instances']}"
        )


def _manifest_chunks(manifest: Mapping[str, Any], *, dataset_id: str) -> list[ChunkInfo]:
    if manifest.get("format") != MANIFEST_FORMAT:
        raise PackageError(f"not a {MANIFEST_FORMAT} manifest: format {manifest.get('format')!r}")
    if manifest.get("dataset_id") != dataset_id:
        raise PackageError(
            f"the manifest is for dataset {manifest.get('dataset_id')!r}, not {dataset_id!r}"
        )
    try:
        chunks = [
            ChunkInfo(index=int(c["index"]), sha256=str(c["sha256"]), size=int(c["size"]))
            for c in manifest["chunks"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise PackageError(f"the manifest's chunk list is malformed: {exc}") from exc
    if not chunks or [c.index for c in chunks] != list(range(len(chunks))):
        raise PackageError("the manifest's chunks must be numbered 0, 1, 2, ... without gaps")
    return chunks


def _verify_chunk_file(folder: Path, chunk: ChunkInfo) -> None:
    path = folder / chunk_file_name(chunk.index)
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while block := f.read(RECORD_SIZE):
                digest.update(block)
                size += len(block)
    except FileNotFoundError:
        raise ChunkMismatch(chunk.index, "the file is missing") from None
    if size != chunk.size:
        raise ChunkMismatch(chunk.index, f"{size} bytes; the manifest says {chunk.size}")
    if digest.hexdigest() != chunk.sha256:
        raise ChunkMismatch(
            chunk.index, f"SHA-256 {digest.hexdigest()} differs from the manifest's {chunk.sha256}"
        )


def _check_annotations(data: bytes, expected: Mapping[str, Any]) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.get("sha256") or len(data) != expected.get("size"):
        raise PackageError(
            f"{ANNOTATIONS_NAME} has SHA-256 {actual}; the manifest says {expected.get('sha256')}"
        )


def _dicom_paths(source: Path, *, exclude: Path) -> list[Path]:
    """Every regular, non-hidden file under ``source`` but the annotation file, sorted."""
    if not source.is_dir():
        raise PackageError(f"{source} is not a folder")
    skip = exclude.resolve()
    found: list[Path] = []
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            if name.startswith(".") or not path.is_file() or path.resolve() == skip:
                continue
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(source).as_posix())


class _ChunkFiles:
    """A sink that cuts the ciphertext stream into one file per record.

    Every record but the last is exactly RECORD_SIZE bytes (docs/encryption.md),
    so cutting at those offsets gives record ``i`` in file ``i``.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._index = 0
        self._file: IO[bytes] | None = None
        self._filled = 0

    def write(self, data: bytes) -> int:
        with memoryview(data) as view:
            while len(view):
                if self._file is None:
                    self._file = open(self._folder / chunk_file_name(self._index), "wb")  # noqa: SIM115
                    self._filled = 0
                take = min(len(view), RECORD_SIZE - self._filled)
                self._file.write(view[:take])
                self._filled += take
                view = view[take:]
                if self._filled == RECORD_SIZE:
                    self._file.close()
                    self._file = None
                    self._index += 1
        return len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _CountingWriter:
    def __init__(self, writer: EncryptingWriter) -> None:
        self._writer = writer
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return self._writer.write(data)


class _JoinedReader:
    """``read(n)`` over an iterator of byte blocks, for ``iter_container``."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._current = b""
        self._offset = 0

    def read(self, size: int, /) -> bytes:
        parts: list[bytes] = []
        while size > 0:
            if self._offset >= len(self._current):
                block = next(self._blocks, None)
                if block is None:
                    break
                self._current, self._offset = block, 0
                continue
            piece = self._current[self._offset : self._offset + size]
            self._offset += len(piece)
            size -= len(piece)
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)


__all__ = [
    "ANNOTATIONS_NAME",
    "MANIFEST_FORMAT",
    "AnnotationError",
    "ChunkMismatch",
    "PackageError",
    "PackageResult",
    "Refusal",
    "RefusedFiles",
    "chunk_file_name",
    "manifest_bytes",
    "manifest_sha256",
    "open_package",
    "package_dataset",
]
