"""Builders of hostile DICOM files for the ingest tests: bombs, deep nesting, lies, garbage."""

from __future__ import annotations

import functools
import struct
import zlib
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from training.ingest.phantoms import write_ct_dataset

PRIVATE_SQ = 0x00091010
EMPTY_PRIVATE_SQ = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 0)
_EMPTY_PRIVATE_SQ_IMPLICIT = struct.pack("<HHI", 0x0009, 0x1010, 0)


def phantom(folder: Path, *, rows: int = 16, cols: int = 16, profile: str = "hospital-a") -> Path:
    write_ct_dataset(folder, profile=profile, count=1, seed=0, rows=rows, cols=cols)
    return folder / "slice_0000.dcm"


def dataset(folder: Path, **kwargs: int) -> Dataset:
    return pydicom.dcmread(phantom(folder, **kwargs))


def encode(ds: Dataset, *, implicit: bool = False) -> bytes:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def deflated(ds: Dataset) -> bytes:
    """``ds`` saved as Deflated Explicit VR Little Endian, as pydicom writes it."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def split_meta(raw: bytes) -> tuple[bytes, bytes]:
    """(preamble + File Meta, data set) of a Part 10 file."""
    (group_length,) = struct.unpack_from("<I", raw, 140)
    end = 144 + group_length
    return raw[:end], raw[end:]


def deflate_bomb(ds: Dataset, tail: bytes, repeat: int) -> bytes:
    """``ds`` (no Pixel Data) deflated, then ``repeat`` bytes of ``tail`` in the same stream."""
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    _, body = split_meta(encode(ds))
    head, _ = split_meta(deflated(ds))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # A full flush ends on a byte boundary with an empty window: the cached blocks follow.
    start = compressor.compress(body) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + start + _deflated_repeat(tail, repeat)


@functools.cache
def _deflated_repeat(tail: bytes, repeat: int) -> bytes:
    """Raw deflate blocks of ``tail`` repeated to ``repeat`` bytes, computed once per run."""
    block = tail * max(1, (1 << 20) // len(tail))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # Each block is flushed with an empty window, so one block's output repeats as is.
    one = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty last block
    return one * (repeat // len(block)) + final


def nested(raw: bytes, depth: int, *, implicit: bool = False) -> bytes:
    """``raw`` (holding an empty private sequence) with that sequence nested ``depth`` deep."""
    if implicit:
        sequence = struct.pack("<HHI", 0x0009, 0x1010, 0xFFFFFFFF)
        empty = _EMPTY_PRIVATE_SQ_IMPLICIT
    else:
        sequence = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 0xFFFFFFFF)
        empty = EMPTY_PRIVATE_SQ
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    assert raw.count(empty) == 1
    return raw.replace(empty, (sequence + item) * depth + closing * depth)


def with_private_sequence(ds: Dataset) -> Dataset:
    ds.add_new(PRIVATE_SQ, "SQ", [])
    return ds


def large_file(path: Path, ds: Dataset, *, frames: int) -> int:
    """A valid multi-frame file of ``frames`` frames, its Pixel Data streamed to disk."""
    ds.NumberOfFrames = frames
    length = int(ds.Rows) * int(ds.Columns) * frames * 2
    del ds.PixelData
    header = encode(ds)
    block = bytes(1 << 20)
    with path.open("wb") as f:
        f.write(header)
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        left = length
        while left:
            left -= f.write(block[: min(len(block), left)])
    return length
