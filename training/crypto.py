"""Dataset encryption (docs/encryption.md): chunked AES-256-GCM, keys wrapped to nodes.

Everything here is reproducible with browser WebCrypto: AES-GCM with a
96-bit nonce and 128-bit tag, X25519, HKDF-SHA256. Byte layouts are in
docs/encryption.md; the constants below are the ones it names.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK_SIZE = 1024 * 1024
NONCE_SIZE = 12
TAG_SIZE = 16
RECORD_OVERHEAD = NONCE_SIZE + TAG_SIZE
RECORD_SIZE = CHUNK_SIZE + RECORD_OVERHEAD
KEY_SIZE = 32
CHUNK_AD_MAGIC = b"MCE1"
WRAP_INFO_LABEL = b"medchain/wrap/v1"
WRAPPED_KEY_SIZE = 32 + NONCE_SIZE + KEY_SIZE + TAG_SIZE
CONTAINER_MAGIC = b"MCCONT1\n"
MAX_NAME_BYTES = 0xFFFF


class DecryptionError(Exception):
    """Ciphertext that does not authenticate: wrong key or dataset, or tampered."""


class ContainerError(ValueError):
    """A decrypted container whose records are malformed."""


class SupportsRead(Protocol):
    def read(self, size: int, /) -> bytes: ...


class SupportsWrite(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class ChunkInfo:
    """One ciphertext record as listed in a manifest: index, SHA-256 hex, size in bytes."""

    index: int
    sha256: str
    size: int


@dataclass(frozen=True)
class WrappedKey:
    ephemeral_public: bytes
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        return self.ephemeral_public + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, raw: bytes) -> WrappedKey:
        if len(raw) != WRAPPED_KEY_SIZE:
            raise DecryptionError(f"a wrapped key is {WRAPPED_KEY_SIZE} bytes, got {len(raw)}")
        return cls(ephemeral_public=raw[:32], nonce=raw[32:44], ciphertext=raw[44:])


def generate_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def chunk_associated_data(*, dataset_id: str, index: int, final: bool) -> bytes:
    """``"MCE1" || u16 len(id) || id (UTF-8) || u64 index || u8 final``, all big-endian."""
    ident = _encode_id(dataset_id, "dataset_id")
    return CHUNK_AD_MAGIC + struct.pack(">H", len(ident)) + ident + struct.pack(">QB", index, final)


class EncryptingWriter:
    """A file-like sink: plaintext in, ciphertext records out, one chunk held at a time.

    A chunk is sealed as non-final only once a byte beyond it arrives, so the
    last record (possibly empty, possibly full) is the one ``close`` seals.
    The plaintext and ciphertext buffers are allocated once and reused, so
    ``writer`` must not keep what it is given after ``write`` returns (the
    contract of Python's ``io`` writers).
    """

    def __init__(self, writer: SupportsWrite, *, key: bytes, dataset_id: str) -> None:
        _check_key(key)
        chunk_associated_data(dataset_id=dataset_id, index=0, final=False)  # validates the id
        self._aead = AESGCM(key)
        self._writer = writer
        self._dataset_id = dataset_id
        self._buffer = bytearray(CHUNK_SIZE)
        self._filled = 0
        self._sealed = bytearray(CHUNK_SIZE + TAG_SIZE)
        self._closed = False
        self.chunks: list[ChunkInfo] = []

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        with memoryview(data) as view:
            # Seal only while bytes beyond the chunk exist: then it is not the final one.
            while self._filled + len(view) > CHUNK_SIZE:
                if self._filled:
                    take = CHUNK_SIZE - self._filled
                    self._buffer[self._filled :] = view[:take]
                    self._seal(self._buffer, final=False)
                    self._filled = 0
                else:
                    take = CHUNK_SIZE
                    self._seal(view[:take], final=False)
                view = view[take:]
            self._buffer[self._filled : self._filled + len(view)] = view
            self._filled += len(view)
        return len(data)

    def close(self) -> list[ChunkInfo]:
        if not self._closed:
            with memoryview(self._buffer) as view:
                self._seal(view[: self._filled], final=True)
            self._buffer, self._sealed = bytearray(), bytearray()
            self._closed = True
        return self.chunks

    def _seal(self, plaintext: bytes | bytearray | memoryview, *, final: bool) -> None:
        index = len(self.chunks)
        # Random per-chunk nonce: still safe if a resumed upload re-seals a chunk under this key.
        nonce = os.urandom(NONCE_SIZE)
        ad = chunk_associated_data(dataset_id=self._dataset_id, index=index, final=final)
        with memoryview(self._sealed) as out:
            sealed = out[: len(plaintext) + TAG_SIZE]
            # Into a reused buffer: a fresh 1 MiB object per chunk costs more than the cipher.
            self._aead.encrypt_into(nonce, plaintext, ad, sealed)
            digest = hashlib.sha256(nonce)
            digest.update(sealed)
            size = NONCE_SIZE + len(sealed)
            self.chunks.append(ChunkInfo(index=index, sha256=digest.hexdigest(), size=size))
            self._writer.write(nonce)
            self._writer.write(sealed)
            sealed.release()


def encrypt_stream(
    reader: SupportsRead, writer: SupportsWrite, *, key: bytes, dataset_id: str
) -> list[ChunkInfo]:
    """Encrypt everything ``reader`` yields into ``writer``; return the manifest's chunk list."""
    sink = EncryptingWriter(writer, key=key, dataset_id=dataset_id)
    while block := reader.read(CHUNK_SIZE):
        sink.write(block)
    return sink.close()


def iter_records(reader: SupportsRead) -> Iterator[bytes]:
    """Split a ciphertext stream into its records (all RECORD_SIZE but the last)."""
    first = True
    while True:
        record = _read_exactly(reader, RECORD_SIZE)
        if not record and not first:
            return  # the last record was full-sized
        yield record
        if len(record) < RECORD_SIZE:
            return
        first = False


def decrypt_records(
    records: Iterable[bytes],
    *,
    key: bytes,
    dataset_id: str,
    chunks: Sequence[ChunkInfo] | None = None,
) -> Iterator[bytes]:
    """Plaintext chunk by chunk; raises :class:`DecryptionError` at the first bad record.

    The last record is opened as final, every other one as non-final, so a
    stream cut at a record boundary fails on its new last record. If the
    manifest's ``chunks`` are given, each record must match its hash and size.
    """
    _check_key(key)
    aead = AESGCM(key)
    iterator = iter(records)
    current = next(iterator, None)
    index = 0
    while current is not None:
        following = next(iterator, None)
        final = following is None
        _check_record(current, index=index, chunks=chunks, final=final)
        ad = chunk_associated_data(dataset_id=dataset_id, index=index, final=final)
        try:
            with memoryview(current) as view:
                plaintext = aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], ad)
        except InvalidTag:
            raise DecryptionError(
                f"chunk {index} does not authenticate: wrong key or dataset, or chunks "
                "tampered with, reordered, dropped or truncated"
            ) from None
        yield plaintext
        current, index = following, index + 1
    if index == 0:
        raise DecryptionError("no ciphertext: a stream has at least one (final) chunk")


def decrypt_stream(
    reader: SupportsRead,
    writer: SupportsWrite,
    *,
    key: bytes,
    dataset_id: str,
    chunks: Sequence[ChunkInfo] | None = None,
) -> int:
    """Decrypt a ciphertext stream into ``writer``; return the plaintext size.

    Plaintext of a chunk is written only after that chunk authenticates;
    a later failure leaves a partial output that the caller must discard.
    """
    total = 0
    for plaintext in decrypt_records(
        iter_records(reader), key=key, dataset_id=dataset_id, chunks=chunks
    ):
        writer.write(plaintext)
        total += len(plaintext)
    return total


def generate_node_keypair() -> tuple[bytes, bytes]:
    """A node's (private, public) X25519 key pair as raw 32-byte strings."""
    private = X25519PrivateKey.generate()
    return _raw_private(private), _raw_public(private.public_key())


def wrap_key(
    data_key: bytes, node_public_key: bytes, *, dataset_id: str, node_id: str
) -> WrappedKey:
    """Seal ``data_key`` to one node: ephemeral X25519, HKDF-SHA256, AES-256-GCM."""
    _check_key(data_key)
    recipient = X25519PublicKey.from_public_bytes(_check_raw(node_public_key, "node public key"))
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral.public_key())
    info = wrap_info(dataset_id=dataset_id, node_id=node_id)
    wrapping_key = _derive_wrapping_key(
        ephemeral.exchange(recipient), ephemeral_public, node_public_key, info
    )
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(wrapping_key).encrypt(nonce, data_key, info)
    return WrappedKey(ephemeral_public=ephemeral_public, nonce=nonce, ciphertext=ciphertext)


def unwrap_key(
    wrapped: WrappedKey, node_private_key: bytes, *, dataset_id: str, node_id: str
) -> bytes:
    """The data key, or :class:`DecryptionError` for another node's key or another grant."""
    private = X25519PrivateKey.from_private_bytes(_check_raw(node_private_key, "node private key"))
    try:
        ephemeral = X25519PublicKey.from_public_bytes(
            _check_raw(wrapped.ephemeral_public, "ephemeral public key")
        )
        shared = private.exchange(ephemeral)
    except ValueError as exc:  # a low-order point gives an all-zero secret
        raise DecryptionError(f"invalid ephemeral public key: {exc}") from exc
    info = wrap_info(dataset_id=dataset_id, node_id=node_id)
    node_public = _raw_public(private.public_key())
    wrapping_key = _derive_wrapping_key(shared, wrapped.ephemeral_public, node_public, info)
    try:
        return AESGCM(wrapping_key).decrypt(wrapped.nonce, wrapped.ciphertext, info)
    except (InvalidTag, ValueError):
        raise DecryptionError(
            "the wrapped key does not open: not wrapped to this node, or for another dataset"
        ) from None


def wrap_info(*, dataset_id: str, node_id: str) -> bytes:
    """HKDF info and AES-GCM associated data of a wrapped key."""
    ds = _encode_id(dataset_id, "dataset_id")
    node = _encode_id(node_id, "node_id")
    return WRAP_INFO_LABEL + struct.pack(">H", len(ds)) + ds + struct.pack(">H", len(node)) + node


class ContainerWriter:
    """Writes the plaintext container: magic, then (name, bytes) records, then an end record."""

    def __init__(self, writer: SupportsWrite) -> None:
        self._writer = writer
        self._names: set[str] = set()
        writer.write(CONTAINER_MAGIC)

    def add(self, name: str, data: bytes) -> None:
        encoded = _encode_name(name)
        if name in self._names:
            raise ContainerError(f"duplicate container entry {name!r}")
        self._names.add(name)
        self._writer.write(struct.pack(">H", len(encoded)) + encoded + struct.pack(">Q", len(data)))
        self._writer.write(data)

    def add_blocks(self, name: str, size: int, blocks: Iterable[bytes]) -> None:
        """A record of ``size`` bytes written block by block, never held whole."""
        encoded = _encode_name(name)
        if name in self._names:
            raise ContainerError(f"duplicate container entry {name!r}")
        self._names.add(name)
        self._writer.write(struct.pack(">H", len(encoded)) + encoded + struct.pack(">Q", size))
        written = 0
        for block in blocks:
            written += len(block)
            if written > size:
                break
            self._writer.write(block)
        if written != size:
            raise ContainerError(f"entry {name!r} was announced as {size} bytes, not {written}")

    def close(self) -> None:
        self._writer.write(struct.pack(">H", 0))


def iter_container(reader: SupportsRead) -> Iterator[tuple[str, bytes]]:
    """The (name, bytes) records of a container, in order; checks the end record."""
    if _read_exactly(reader, len(CONTAINER_MAGIC)) != CONTAINER_MAGIC:
        raise ContainerError("not a MedChain container (bad magic)")
    names: set[str] = set()
    while True:
        name_len = struct.unpack(">H", _read_field(reader, 2))[0]
        if name_len == 0:
            if reader.read(1):
                raise ContainerError("data after the end record")
            return
        try:
            name = _read_field(reader, name_len).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContainerError("an entry name is not UTF-8") from exc
        if name in names:
            raise ContainerError(f"duplicate container entry {name!r}")
        names.add(name)
        size = struct.unpack(">Q", _read_field(reader, 8))[0]
        yield name, _read_field(reader, size)


def _read_exactly(reader: SupportsRead, size: int) -> bytes:
    block = reader.read(size)
    if len(block) == size or not block:
        return block
    parts = [block]
    remaining = size - len(block)
    while remaining:
        block = reader.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


def _read_field(reader: SupportsRead, size: int) -> bytes:
    data = _read_exactly(reader, size)
    if len(data) != size:
        raise ContainerError("the container ends in the middle of a record")
    return data


def _check_record(
    record: bytes, *, index: int, chunks: Sequence[ChunkInfo] | None, final: bool
) -> None:
    if len(record) < RECORD_OVERHEAD:
        raise DecryptionError(f"chunk {index} is {len(record)} bytes, shorter than a record")
    if chunks is None:
        return
    if index >= len(chunks):
        raise DecryptionError(f"chunk {index} is not in the manifest ({len(chunks)} chunks)")
    expected = chunks[index]
    if len(record) != expected.size or hashlib.sha256(record).hexdigest() != expected.sha256:
        raise DecryptionError(f"chunk {index} does not match the manifest's hash and size")
    if final and index != len(chunks) - 1:
        raise DecryptionError(f"the stream ends at chunk {index}; the manifest lists {len(chunks)}")


def _derive_wrapping_key(
    shared: bytes, ephemeral_public: bytes, node_public: bytes, info: bytes
) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=ephemeral_public + node_public, info=info
    )
    return hkdf.derive(shared)


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError("a data key is 32 bytes (AES-256)")


def _check_raw(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError(f"{what} must be 32 raw bytes")
    return key


def _encode_id(value: str, what: str) -> bytes:
    encoded = value.encode("utf-8")
    if not encoded or len(encoded) > 0xFFFF:
        raise ValueError(f"{what} must be 1 to 65535 UTF-8 bytes")
    return encoded


def _encode_name(name: str) -> bytes:
    encoded = name.encode("utf-8")
    if not encoded or len(encoded) > MAX_NAME_BYTES:
        raise ContainerError(f"entry name must be 1 to {MAX_NAME_BYTES} UTF-8 bytes")
    return encoded
