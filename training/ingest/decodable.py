"""What ingest accepts is what a node can decode: one table, read by every ingest path.

The CLI, the portal and the browser (Pyodide) run this same module, and the
node's pixel reader (``training.ingest.pixels``) decodes exactly what it allows, so
a file that passes ingest never fails later on a node. Pure Python: no
numpy, no pydicom (docs/ingest.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from training.ingest.deid import IngestRefused

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

# Native (uncompressed) syntaxes; a deflated file is inflated into Explicit VR Little Endian.
ACCEPTED_TRANSFER_SYNTAXES = {
    IMPLICIT_VR_LITTLE_ENDIAN: "Implicit VR Little Endian",
    EXPLICIT_VR_LITTLE_ENDIAN: "Explicit VR Little Endian",
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: "Deflated Explicit VR Little Endian",
}
# Pixel Data may run this far past what the header declares (padding some writers add);
# a node reads only the declared bytes.
PIXEL_DATA_SLACK = 64 << 10
# Compressed (encapsulated) pixel data is refused: the browser has no decoder for it,
# so it could not check that a node will decode it (docs/ingest.md says why).
_ENCAPSULATED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")
_KNOWN_SYNTAX_NAMES = {
    EXPLICIT_VR_BIG_ENDIAN: "Explicit VR Big Endian (retired)",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, First-Order Prediction",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
_EXPORT_HINT = (
    "export the images uncompressed (Explicit VR Little Endian) or deflated, "
    "e.g. `dcmdjpeg in.dcm out.dcm` or `gdcmconv --raw in.dcm out.dcm`"
)


@dataclass(frozen=True)
class PixelFormat:
    """One decodable layout of native pixel data."""

    photometric: str
    samples_per_pixel: int
    bits_allocated: frozenset[int]


# Ingestible images are CT and MR slices: one grey sample per pixel, 8 or 16 bits.
DECODABLE = (
    PixelFormat("MONOCHROME2", 1, frozenset({8, 16})),
    PixelFormat("MONOCHROME1", 1, frozenset({8, 16})),
)
_BY_PHOTOMETRIC = {f.photometric: f for f in DECODABLE}


@dataclass(frozen=True)
class PixelHeader:
    """The header values a node needs to decode native pixel data."""

    rows: int
    cols: int
    frames: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int

    @property
    def pixel_bytes(self) -> int:
        bits = self.rows * self.cols * self.frames * self.samples_per_pixel * self.bits_allocated
        return (bits + 7) // 8


def check_transfer_syntax(uid: str) -> None:
    """Refuse a transfer syntax outside :data:`ACCEPTED_TRANSFER_SYNTAXES`, saying what to do."""
    if uid in ACCEPTED_TRANSFER_SYNTAXES:
        return
    name = _KNOWN_SYNTAX_NAMES.get(uid)
    described = f"{name} ({uid})" if name else uid
    if uid.startswith(_ENCAPSULATED_PREFIXES):
        raise IngestRefused(
            f"transfer syntax {described} holds compressed pixel data, which MedChain "
            f"does not accept: {_EXPORT_HINT}"
        )
    accepted = ", ".join(ACCEPTED_TRANSFER_SYNTAXES.values())
    raise IngestRefused(f"unsupported transfer syntax {described}; accepted: {accepted}")


def check_decodable(header: PixelHeader, *, pixel_length: int) -> None:
    """Refuse pixel data a node's reader cannot decode, from the header alone."""
    if header.rows <= 0 or header.cols <= 0:
        raise IngestRefused("missing Rows or Columns")
    if header.frames <= 0:
        raise IngestRefused(f"Number of Frames (0028,0008) is {header.frames}")
    layout = _BY_PHOTOMETRIC.get(header.photometric)
    if layout is None:
        accepted = ", ".join(_BY_PHOTOMETRIC)
        raise IngestRefused(
            f"Photometric Interpretation (0028,0004) {header.photometric!r} is not decodable; "
            f"accepted: {accepted}"
        )
    if header.samples_per_pixel != layout.samples_per_pixel:
        raise IngestRefused(
            f"Samples per Pixel (0028,0002) is {header.samples_per_pixel}; "
            f"{layout.photometric} needs {layout.samples_per_pixel}"
        )
    if header.bits_allocated not in layout.bits_allocated:
        allowed = " or ".join(str(b) for b in sorted(layout.bits_allocated))
        raise IngestRefused(
            f"Bits Allocated (0028,0100) is {header.bits_allocated}; decodable: {allowed}"
        )
    if not 1 <= header.bits_stored <= header.bits_allocated:
        raise IngestRefused(
            f"Bits Stored (0028,0101) is {header.bits_stored}, "
            f"outside 1..{header.bits_allocated} (Bits Allocated)"
        )
    if header.high_bit != header.bits_stored - 1:
        raise IngestRefused(
            f"High Bit (0028,0102) is {header.high_bit}; decodable: Bits Stored - 1 "
            f"= {header.bits_stored - 1}"
        )
    if header.pixel_representation not in (0, 1):
        raise IngestRefused(
            f"Pixel Representation (0028,0103) is {header.pixel_representation}; "
            "decodable: 0 (unsigned) or 1 (signed)"
        )
    needed = header.pixel_bytes
    if pixel_length < needed:
        raise IngestRefused(
            f"Pixel Data is truncated: {pixel_length} bytes, the header needs {needed}"
        )
    if pixel_length > needed + PIXEL_DATA_SLACK:
        raise IngestRefused(
            f"Pixel Data holds {pixel_length} bytes but Rows x Columns x Frames x Samples x "
            f"Bits Allocated declare {needed} (+ {PIXEL_DATA_SLACK} of padding at most): "
            "the image geometry in the header is wrong"
        )
