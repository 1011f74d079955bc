from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from training.crypto import (
    CHUNK_SIZE,
    RECORD_SIZE,
    ChunkInfo,
    ContainerError,
    ContainerWriter,
    DecryptionError,
    EncryptingWriter,
    WrappedKey,
    chunk_associated_data,
    decrypt_records,
    decrypt_stream,
    encrypt_stream,
    generate_data_key,
    generate_node_keypair,
    iter_container,
    iter_records,
    unwrap_key,
    wrap_info,
    wrap_key,
)

DATASET = "3f2c9a4e-0b7d-4c1e-9a55-6d2f8e1b7c20"
KEY = bytes(range(32))


def _encrypt(plaintext: bytes, *, key: bytes = KEY, dataset_id: str = DATASET):
    out = io.BytesIO()
    chunks = encrypt_stream(io.BytesIO(plaintext), out, key=key, dataset_id=dataset_id)
    return out.getvalue(), chunks


def _records(ciphertext: bytes) -> list[bytes]:
    return list(iter_records(io.BytesIO(ciphertext)))


def _decrypt_records(records: list[bytes], *, key: bytes = KEY, dataset_id: str = DATASET) -> bytes:
    return b"".join(decrypt_records(records, key=key, dataset_id=dataset_id))


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7]
)
def test_it_round_trips(size):
    plaintext = os.urandom(size)
    ciphertext, chunks = _encrypt(plaintext)
    expected_chunks = max(1, -(-size // CHUNK_SIZE))
    assert len(chunks) == expected_chunks
    assert [c.index for c in chunks] == list(range(expected_chunks))
    assert sum(c.size for c in chunks) == len(ciphertext) == size + 28 * expected_chunks
    for chunk, record in zip(chunks, _records(ciphertext), strict=True):
        assert chunk.sha256 == hashlib.sha256(record).hexdigest()
    out = io.BytesIO()
    total = decrypt_stream(io.BytesIO(ciphertext), out, key=KEY, dataset_id=DATASET, chunks=chunks)
    assert total == size and out.getvalue() == plaintext


def test_records_sit_at_fixed_offsets_so_uploads_can_resume():
    ciphertext, chunks = _encrypt(os.urandom(2 * CHUNK_SIZE + 5))
    for chunk in chunks:
        record = ciphertext[chunk.index * RECORD_SIZE : chunk.index * RECORD_SIZE + chunk.size]
        assert hashlib.sha256(record).hexdigest() == chunk.sha256


@pytest.fixture(scope="module")
def four_chunks() -> tuple[bytes, list[bytes]]:
    plaintext = os.urandom(3 * CHUNK_SIZE + 7)
    ciphertext, _ = _encrypt(plaintext)
    return plaintext, _records(ciphertext)


def _flip(record: bytes, position: int) -> bytes:
    return record[:position] + bytes([record[position] ^ 1]) + record[position + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: [r[1], r[0], r[2], r[3]], id="swapped"),
        pytest.param(lambda r: [r[0], r[2], r[3]], id="dropped-middle"),
        pytest.param(lambda r: [r[0], r[1], r[2]], id="dropped-final"),
        pytest.param(lambda r: [r[1], r[2], r[0], r[3]], id="reordered"),
        pytest.param(lambda r: [r[0], r[1], r[2], r[3][:-1]], id="truncated-final"),
        pytest.param(lambda r: [r[0], r[1], r[2], r[3], r[3]], id="final-repeated"),
        pytest.param(lambda r: [r[0], r[0], r[2], r[3]], id="duplicated"),
        pytest.param(lambda r: [_flip(r[0], 0), *r[1:]], id="flipped-nonce"),
        pytest.param(lambda r: [r[0], _flip(r[1], 500), *r[2:]], id="flipped-ciphertext"),
        pytest.param(lambda r: [*r[:3], _flip(r[3], len(r[3]) - 1)], id="flipped-tag"),
        pytest.param(lambda r: [], id="empty"),
        pytest.param(lambda r: [*r[:3], r[3][:10]], id="short-record"),
    ],
)
def test_it_refuses_tampered_streams(four_chunks, tamper):
    _, records = four_chunks
    with pytest.raises(DecryptionError):
        _decrypt_records(tamper(records))


def test_the_untampered_records_decrypt(four_chunks):
    plaintext, records = four_chunks
    assert _decrypt_records(records) == plaintext


def test_it_refuses_a_chunk_from_another_dataset_and_the_wrong_key(four_chunks):
    plaintext, records = four_chunks
    other = _records(_encrypt(plaintext, dataset_id="another-dataset")[0])
    with pytest.raises(DecryptionError, match="chunk 1 does not authenticate"):
        _decrypt_records([records[0], other[1], records[2], records[3]])
    with pytest.raises(DecryptionError, match="chunk 0"):
        _decrypt_records(records, dataset_id="another-dataset")
    with pytest.raises(DecryptionError, match="chunk 0"):
        _decrypt_records(records, key=generate_data_key())


def test_it_checks_the_manifest_hashes():
    ciphertext, chunks = _encrypt(os.urandom(CHUNK_SIZE + 10))
    records = _records(ciphertext)
    bad = [chunks[0], ChunkInfo(index=1, sha256="00" * 32, size=chunks[1].size)]
    with pytest.raises(DecryptionError, match="chunk 1 does not match the manifest"):
        b"".join(decrypt_records(records, key=KEY, dataset_id=DATASET, chunks=bad))
    with pytest.raises(DecryptionError, match="not in the manifest"):
        b"".join(decrypt_records(records, key=KEY, dataset_id=DATASET, chunks=chunks[:1]))


def test_associated_data_layout_is_pinned():
    ad = chunk_associated_data(dataset_id="ds-1", index=2, final=True)
    assert ad == b"MCE1" + b"\x00\x04" + b"ds-1" + bytes.fromhex("0000000000000002") + b"\x01"
    assert ad.hex() == "4d434531000464732d31000000000000000201"


def test_memory_stays_flat_whatever_the_stream_size():
    class Zeros:
        def __init__(self, size: int) -> None:
            self.left = size

        def read(self, n: int) -> bytes:
            n = min(n, self.left)
            self.left -= n
            return bytes(n)

    class Sink:
        def __init__(self) -> None:
            self.records: list[bytes] = []
            self.size = 0

        def write(self, data: bytes) -> int:
            self.size += len(data)
            return len(data)

    size = 24 * CHUNK_SIZE + 3
    tracemalloc.start()
    sink = Sink()
    encrypt_stream(Zeros(size), sink, key=KEY, dataset_id=DATASET)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sink.size == size + 25 * 28
    assert peak < 5 * CHUNK_SIZE, f"peak {peak / CHUNK_SIZE:.1f} MiB for a 24 MiB stream"


def test_decrypting_keeps_memory_flat(tmp_path):
    path = tmp_path / "big.enc"
    with path.open("wb") as out:
        sink = EncryptingWriter(out, key=KEY, dataset_id=DATASET)
        for _ in range(16):
            sink.write(bytes(CHUNK_SIZE))
        chunks = sink.close()

    class Discard:
        def write(self, data: bytes) -> int:
            return len(data)

    tracemalloc.start()
    with path.open("rb") as reader:
        total = decrypt_stream(reader, Discard(), key=KEY, dataset_id=DATASET, chunks=chunks)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == 16 * CHUNK_SIZE
    assert peak < 5 * CHUNK_SIZE


def test_it_wraps_and_unwraps_a_data_key():
    private, public = generate_node_keypair()
    assert len(private) == len(public) == 32
    data_key = generate_data_key()
    wrapped = wrap_key(data_key, public, dataset_id=DATASET, node_id="node-7")
    assert len(wrapped.to_bytes()) == 92
    restored = WrappedKey.from_bytes(wrapped.to_bytes())
    assert unwrap_key(restored, private, dataset_id=DATASET, node_id="node-7") == data_key
    again = wrap_key(data_key, public, dataset_id=DATASET, node_id="node-7")
    assert again.ephemeral_public != wrapped.ephemeral_public  # a fresh ephemeral key each time


@pytest.mark.parametrize(
    "change",
    ["other node key", "other dataset", "other node id", "ephemeral", "ciphertext", "nonce"],
)
def test_unwrapping_refuses_anything_but_the_right_node_and_grant(change):
    private, public = generate_node_keypair()
    wrapped = wrap_key(generate_data_key(), public, dataset_id=DATASET, node_id="node-7")
    dataset_id, node_id = DATASET, "node-7"
    if change == "other node key":
        private, _ = generate_node_keypair()
    elif change == "other dataset":
        dataset_id = "another-dataset"
    elif change == "other node id":
        node_id = "node-8"
    else:
        raw = bytearray(wrapped.to_bytes())
        raw[{"ephemeral": 3, "nonce": 35, "ciphertext": 60}[change]] ^= 1
        wrapped = WrappedKey.from_bytes(bytes(raw))
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, private, dataset_id=dataset_id, node_id=node_id)


def test_unwrapping_refuses_a_low_order_ephemeral_key():
    private, _ = generate_node_keypair()
    wrapped = WrappedKey(ephemeral_public=bytes(32), nonce=bytes(12), ciphertext=bytes(48))
    with pytest.raises(DecryptionError, match="ephemeral"):
        unwrap_key(wrapped, private, dataset_id=DATASET, node_id="node-7")


def test_a_wrapped_key_opens_by_the_documented_recipe():
    """docs/encryption.md, step by step, with nothing from training.crypto but the layouts."""
    private, public = generate_node_keypair()
    data_key = generate_data_key()
    raw = wrap_key(data_key, public, dataset_id="ds-1", node_id="node-a").to_bytes()
    ephemeral_public, nonce, ciphertext = raw[:32], raw[32:44], raw[44:]
    shared = X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(ephemeral_public)
    )
    info = b"medchain/wrap/v1" + struct.pack(">H", 4) + b"ds-1" + struct.pack(">H", 6) + b"node-a"
    assert wrap_info(dataset_id="ds-1", node_id="node-a") == info
    kek = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + public, info=info
    ).derive(shared)
    assert AESGCM(kek).decrypt(nonce, ciphertext, info) == data_key


def test_a_chunk_opens_by_the_documented_recipe():
    plaintext = b"hello, consortium"
    ciphertext, _ = _encrypt(plaintext, dataset_id="ds-1")
    nonce, sealed = ciphertext[:12], ciphertext[12:]
    ad = b"MCE1" + struct.pack(">H", 4) + b"ds-1" + struct.pack(">QB", 0, 1)
    assert AESGCM(KEY).decrypt(nonce, sealed, ad) == plaintext


def test_the_container_round_trips_through_encryption():
    entries = [("instances/2.25.1.dcm", os.urandom(5000)), ("annotations.json", b"{}"), ("e", b"")]
    encrypted = io.BytesIO()
    sink = EncryptingWriter(encrypted, key=KEY, dataset_id=DATASET)
    container = ContainerWriter(sink)
    for name, data in entries:
        container.add(name, data)
    container.close()
    chunks = sink.close()
    plain = io.BytesIO()
    decrypt_stream(
        io.BytesIO(encrypted.getvalue()), plain, key=KEY, dataset_id=DATASET, chunks=chunks
    )
    assert list(iter_container(io.BytesIO(plain.getvalue()))) == entries


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"NOTACONT", "bad magic"),
        (b"MCCONT1\n\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x05abc", "ends in the middle"),
        (b"MCCONT1\n\x00\x01a" + bytes(8) + b"\x00\x01a" + bytes(8) + b"\x00\x00", "duplicate"),
        (b"MCCONT1\n\x00\x00extra", "after the end record"),
        (b"MCCONT1\n\x00\x01a" + bytes(8), "ends in the middle"),
    ],
)
def test_a_malformed_container_is_refused(raw, message):
    with pytest.raises(ContainerError, match=message):
        list(iter_container(io.BytesIO(raw)))
    with pytest.raises(ContainerError):
        ContainerWriter(io.BytesIO()).add("", b"")
