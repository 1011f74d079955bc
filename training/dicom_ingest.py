"""The uploader's pipeline for one DICOM file: read, check, de-identify, re-serialise.

Pixel data is never decoded: it is read as bytes (lazily, through pydicom's
deferred reads) and written back unchanged. This module must not import
torch: the ingest runs in processes without it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from io import BufferedReader, BytesIO
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR

from training.deid import (
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    IngestRefused,
    check_ingestible,
    deidentify,
    load_profile,
)

# Elements larger than this stay on disk until written back (pixel data, mostly).
DEFER_SIZE = 64 * 1024
__all__ = ["IngestRefused", "IngestedInstance", "ingest_file", "ingest_file_pydicom"]


@dataclass(frozen=True)
class IngestedInstance:
    sop_uid_original: str
    sop_uid_new: str
    rows: int
    cols: int
    modality: str
    data: bytes


def ingest_file(path: str | Path, *, uid_secret: bytes) -> IngestedInstance:
    """De-identified Part 10 bytes for the file at ``path``, or :class:`IngestRefused`.

    The common case (explicit VR little endian, flat header) takes the raw
    codec in ``training.dicom_fast``, which gives the same bytes as
    :func:`ingest_file_pydicom`; every other file, and every refusal, is
    decided by the pydicom path.
    """
    from training.dicom_fast import ingest_path  # here: it imports IngestedInstance from us

    fast = ingest_path(path, uid_secret=uid_secret, profile=load_profile())
    return fast if fast is not None else ingest_file_pydicom(path, uid_secret=uid_secret)


def ingest_file_pydicom(path: str | Path, *, uid_secret: bytes) -> IngestedInstance:
    """The reference ingest: pydicom reads, the profile scrubs, pydicom writes."""
    try:
        source = Path(path).open("rb")  # noqa: SIM115 - closed below, after the pixel data
    except OSError as exc:
        raise IngestRefused(f"cannot read the file: {exc.strerror or exc}") from exc
    with source:
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
        data = _serialise(ds, source=source)
    return IngestedInstance(
        sop_uid_original=original_uid,
        sop_uid_new=str(ds.SOPInstanceUID),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        modality=str(ds.get("Modality", "")),
        data=data,
    )


def _read(source: BufferedReader) -> Dataset:
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
    _check_not_truncated(ds, size=os.fstat(source.fileno()).st_size)
    return ds


def _check_not_truncated(ds: Dataset, *, size: int) -> None:
    if PIXEL_DATA not in ds:
        return
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH:
        return
    missing = raw.value_tell + raw.length - size
    if missing > 0:
        raise IngestRefused(f"the file is truncated: Pixel Data lacks {missing} bytes")


def _serialise(ds: Dataset, *, source: BufferedReader) -> bytes:
    """The de-identified file's bytes; native Pixel Data is copied from ``source`` as it is.

    Writing the header with pydicom and appending the Pixel Data element gives
    the same bytes as writing the whole dataset, without pydicom buffering
    and copying the largest value several times.
    """
    pixel = _appendable_pixel_data(ds)
    if pixel is None:
        return _write(ds)
    del ds[PIXEL_DATA]
    try:
        header = _write(ds)
    finally:
        ds[PIXEL_DATA] = pixel
    if pixel.VR is None:  # implicit VR: tag, 4-byte length
        element = struct.pack("<HHI", 0x7FE0, 0x0010, pixel.length)
    else:  # explicit VR OB/OW: tag, VR, 2 reserved bytes, 4-byte length
        element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, pixel.VR.encode(), 0, pixel.length)
    value = pixel.value if pixel.value is not None else _read_value(source, pixel)
    return b"".join((header, element, value))


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


def _read_value(source: BufferedReader, raw: RawDataElement) -> bytes:
    try:
        source.seek(raw.value_tell)
        value = source.read(raw.length)
    except OSError as exc:
        raise IngestRefused(f"cannot read the file: {exc.strerror or exc}") from exc
    if len(value) != raw.length:
        missing = raw.length - len(value)
        raise IngestRefused(f"the file is truncated: Pixel Data lacks {missing} bytes")
    return value


def _write(ds: Dataset) -> bytes:
    buffer = BytesIO()
    try:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception as exc:  # e.g. values pydicom cannot encode: refuse this file only
        raise IngestRefused(f"cannot re-encode the de-identified file: {exc}") from exc
    return buffer.getvalue()
