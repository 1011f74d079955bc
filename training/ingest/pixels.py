"""The node's pixel reader: an ingested DICOM file to an array in Hounsfield units.

It decodes exactly the layouts ``training.ingest.decodable`` lets through ingest
(native, little endian, one grey sample of 8 or 16 bits), so whatever ingest
accepted, a node can read. Runs on nodes, which have numpy; not in the browser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.filebase import DicomBytesIO

from training.ingest.decodable import PixelHeader, check_decodable
from training.ingest.deid import IngestRefused


class PixelDecodeError(Exception):
    """A file whose pixels cannot be decoded; the message says why."""


def read_hu(source: bytes | str | Path) -> np.ndarray:
    """Frames x rows x columns, float32, in HU (Rescale Slope and Intercept applied)."""
    fp = DicomBytesIO(source) if isinstance(source, bytes | bytearray) else source
    ds = pydicom.dcmread(fp)
    if ds.file_meta.TransferSyntaxUID.is_compressed or not ds.is_little_endian:
        raise PixelDecodeError(f"transfer syntax {ds.file_meta.TransferSyntaxUID} is not decodable")
    header = PixelHeader(
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        frames=int(ds.get("NumberOfFrames") or 1),
        samples_per_pixel=int(ds.SamplesPerPixel),
        photometric=str(ds.PhotometricInterpretation).strip(),
        bits_allocated=int(ds.BitsAllocated),
        bits_stored=int(ds.BitsStored),
        high_bit=int(ds.HighBit),
        pixel_representation=int(ds.PixelRepresentation),
    )
    raw = ds.PixelData
    try:
        check_decodable(header, pixel_length=len(raw))
    except IngestRefused as exc:
        raise PixelDecodeError(exc.reason) from exc
    stored = _stored_values(raw, header)
    slope = float(ds.get("RescaleSlope") or 1)
    intercept = float(ds.get("RescaleIntercept") or 0)
    return (stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)).reshape(
        header.frames, header.rows, header.cols
    )


def _stored_values(raw: bytes, header: PixelHeader) -> np.ndarray:
    """The stored values as integers: bits above Bits Stored dropped, signed ones extended."""
    count = header.rows * header.cols * header.frames
    dtype = np.dtype("<u1" if header.bits_allocated == 8 else "<u2")
    values = np.frombuffer(raw, dtype=dtype, count=count).astype(np.int32)
    values &= (1 << header.bits_stored) - 1
    if header.pixel_representation == 1:
        sign = 1 << (header.bits_stored - 1)
        values = (values ^ sign) - sign
    return values
