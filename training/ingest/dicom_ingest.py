"""The uploader's pipeline for one DICOM file: scan, read, check, de-identify, re-serialise.

Every file is first walked by ``training.ingest.dicom_scan`` (limits on size, header,
nesting; transfer syntax and pixel layout checked against
``training.ingest.decodable``); only then does the raw codec (``training.ingest.dicom_fast``)
or pydicom read it. Pixel data is never decoded, nor held whole: the result
names where it lies in the source file, and the packager streams it from
there. Any error becomes :class:`IngestRefused` with a reason; an unexpected
one is logged with its traceback. This module must not import torch: the
ingest runs in processes without it (and in the browser, under Pyodide).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import IO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR

from training.ingest.deid import (
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    IngestRefused,
    check_ingestible,
    deidentify,
    load_profile,
)
from training.ingest.dicom_scan import DEFAULT_MAX_FILE_BYTES, Scan, scan_file

logger = logging.getLogger(__name__)

# Elements larger than this stay on disk until written back (pixel data, mostly).
DEFER_SIZE = 64 * 1024
# Pixel Data that pydicom must re-encode (not the last element, or odd length) is held
# in memory to write it: only up to this size, so the ingest's memory stays bounded.
IN_MEMORY_PIXEL_LIMIT = 32 << 20
BLOCK_SIZE = 1 << 20
__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "FileSpan",
    "IngestRefused",
    "IngestedInstance",
    "ingest_file",
    "ingest_file_pydicom",
]


@dataclass(frozen=True)
class FileSpan:
    """``length`` bytes at ``offset`` of a file: a path reopened on reading, or an open file."""

    source: Path | IO[bytes]
    offset: int
    length: int

    def blocks(self, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        if isinstance(self.source, Path):
            with self.source.open("rb") as f:
                yield from _read_span(f, self.offset, self.length, block_size)
        else:
            yield from _read_span(self.source, self.offset, self.length, block_size)


@dataclass(frozen=True, eq=False)
class IngestedInstance:
    """A de-identified file: ``header`` bytes, then the source's Pixel Data value if any.

    ``pixels`` is None when ``header`` holds the whole file. Equality is by
    content. Call :meth:`close` when done (it releases an inflated copy).
    """

    sop_uid_original: str
    sop_uid_new: str
    rows: int
    cols: int
    modality: str
    header: bytes
    pixels: FileSpan | None = None
    owned: IO[bytes] | None = None

    @property
    def size(self) -> int:
        return len(self.header) + (self.pixels.length if self.pixels is not None else 0)

    def blocks(self, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        """The file's bytes in pieces of at most ``block_size`` (plus the header)."""
        yield self.header
        if self.pixels is not None:
            yield from self.pixels.blocks(block_size)

    @property
    def data(self) -> bytes:
        """The whole file in memory: for tests and small files; the packager streams."""
        return b"".join(self.blocks())

    def close(self) -> None:
        if self.owned is not None:
            self.owned.close()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IngestedInstance):
            return NotImplemented
        return self._key() == other._key() and self.data == other.data

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, int, int, str]:
        return (self.sop_uid_original, self.sop_uid_new, self.rows, self.cols, self.modality)


def ingest_file(
    path: str | Path, *, uid_secret: bytes, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> IngestedInstance:
    """De-identified Part 10 data for the file at ``path``, or :class:`IngestRefused`.

    The common case (explicit VR little endian, flat header) takes the raw
    codec in ``training.ingest.dicom_fast``, which gives the same bytes as
    :func:`ingest_file_pydicom`; every other file is the pydicom path's.
    Files larger than ``max_file_bytes`` are refused (docs/ingest.md).
    """
    return _guarded(path, lambda: _ingest(path, uid_secret, max_file_bytes, fast=True))


def ingest_file_pydicom(
    path: str | Path, *, uid_secret: bytes, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> IngestedInstance:
    """The reference ingest: the same scan, then pydicom reads, scrubs and writes."""
    return _guarded(path, lambda: _ingest(path, uid_secret, max_file_bytes, fast=False))


def _guarded(path: str | Path, run: Callable[[], IngestedInstance]) -> IngestedInstance:
    try:
        return run()
    except IngestRefused:
        raise
    except Exception as exc:  # a bug or a library's surprise: refuse this file, keep going
        logger.exception("unexpected error while ingesting %s", path)
        raise IngestRefused(
            f"the file could not be processed ({type(exc).__name__}: {exc}); "
            "it may be malformed: check it with a DICOM validator such as dciodvfy"
        ) from exc


def _ingest(
    path: str | Path, uid_secret: bytes, max_file_bytes: int, *, fast: bool
) -> IngestedInstance:
    scan = scan_file(path, max_file_bytes=max_file_bytes)
    kept = False
    try:
        pixel_source: Path | IO[bytes] = scan.source if scan.owned else Path(path)
        instance = None
        if fast:
            from training.ingest.dicom_fast import ingest_scanned  # here: it imports us

            instance = ingest_scanned(
                scan, pixel_source=pixel_source, uid_secret=uid_secret, profile=load_profile()
            )
        if instance is None:
            instance = _ingest_pydicom(scan, pixel_source=pixel_source, uid_secret=uid_secret)
        kept = scan.owned and instance.pixels is not None
        return replace(instance, owned=scan.source) if kept else instance
    finally:
        if not kept:
            scan.close()


def _ingest_pydicom(
    scan: Scan, *, pixel_source: Path | IO[bytes], uid_secret: bytes
) -> IngestedInstance:
    source = scan.source
    source.seek(0)
    ds = _read(source)
    try:
        check_ingestible(ds)
        value = ds.get("SOPInstanceUID", "")
        if isinstance(value, MultiValue):
            raise IngestRefused("the SOP Instance UID has more than one value")
        original_uid = str(value).strip(" \x00")
        if not original_uid:
            raise IngestRefused("no SOP Instance UID")
        deidentify(ds, uid_secret=uid_secret, profile=load_profile())
    except IngestRefused:
        raise
    except Exception as exc:  # values pydicom cannot parse once they are touched
        raise IngestRefused(f"malformed DICOM header: {type(exc).__name__}: {exc}") from exc
    header, pixels = _serialise(ds, scan=scan, pixel_source=pixel_source)
    return IngestedInstance(
        sop_uid_original=original_uid,
        sop_uid_new=str(ds.SOPInstanceUID),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        modality=str(ds.get("Modality", "")),
        header=header,
        pixels=pixels,
    )


def _read(source: IO[bytes]) -> Dataset:
    try:
        ds = pydicom.dcmread(source, defer_size=DEFER_SIZE)
    except pydicom.errors.InvalidDicomError as exc:
        raise IngestRefused(
            "not a DICOM Part 10 file: no 128-byte preamble and 'DICM' prefix"
        ) from exc
    except OSError as exc:
        raise IngestRefused(f"cannot read the file: {exc.strerror or exc}") from exc
    except Exception as exc:  # a malformed upload must come back as a per-file reason
        raise IngestRefused(f"malformed DICOM file: {type(exc).__name__}: {exc}") from exc
    if not ds.file_meta.get("TransferSyntaxUID"):
        raise IngestRefused("no Transfer Syntax UID in the File Meta Information")
    return ds


def _serialise(
    ds: Dataset, *, scan: Scan, pixel_source: Path | IO[bytes]
) -> tuple[bytes, FileSpan | None]:
    """The de-identified file: its header bytes, and where its native Pixel Data lies.

    Writing the header with pydicom and appending the Pixel Data element gives
    the same bytes as writing the whole dataset, without pydicom buffering
    and copying the largest value several times.
    """
    pixel = _appendable_pixel_data(ds)
    if pixel is None:
        if scan.pixel_length > IN_MEMORY_PIXEL_LIMIT:
            raise IngestRefused(
                f"Pixel Data is not the file's last element or has an odd length, which is "
                f"accepted only up to {IN_MEMORY_PIXEL_LIMIT >> 20} MiB of pixel data: "
                "export the file again (uncompressed, Explicit VR Little Endian)"
            )
        return _write(ds), None
    if pixel.value_tell != scan.pixel_value_offset or pixel.length != scan.pixel_length:
        raise IngestRefused("pydicom and the scan disagree on where Pixel Data lies")
    del ds[PIXEL_DATA]
    try:
        header = _write(ds)
    finally:
        ds[PIXEL_DATA] = pixel
    if pixel.VR is None:  # implicit VR: tag, 4-byte length
        element = struct.pack("<HHI", 0x7FE0, 0x0010, pixel.length)
    else:  # explicit VR OB/OW: tag, VR, 2 reserved bytes, 4-byte length
        element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, pixel.VR.encode(), 0, pixel.length)
    return header + element, FileSpan(pixel_source, pixel.value_tell, pixel.length)


def _appendable_pixel_data(ds: Dataset) -> RawDataElement | None:
    """The undecoded native Pixel Data, if it is the last element and needs no re-encoding."""
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH or raw.length % 2:
        return None
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax == ImplicitVRLittleEndian:
        native = ds.original_encoding == (True, True) and raw.VR is None
    elif syntax == ExplicitVRLittleEndian:
        native = ds.original_encoding == (False, True) and raw.VR in (VR.OB, VR.OW)
    else:
        native = False  # big endian, deflated or encapsulated: pydicom writes it
    if not native:
        return None
    if max(map(int, ds.keys())) != PIXEL_DATA:
        return None
    return raw


def _read_span(f: IO[bytes], offset: int, length: int, block_size: int) -> Iterator[bytes]:
    f.seek(offset)
    left = length
    while left:
        block = f.read(min(block_size, left))
        if not block:
            raise IngestRefused(
                f"the file changed while it was read: Pixel Data lacks {left} bytes"
            )
        left -= len(block)
        yield block


def _write(ds: Dataset) -> bytes:
    buffer = BytesIO()
    try:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception as exc:  # e.g. values pydicom cannot encode: refuse this file only
        raise IngestRefused(f"cannot re-encode the de-identified file: {exc}") from exc
    return buffer.getvalue()
