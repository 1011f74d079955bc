"""A fast header codec for the common case of the ingest: explicit VR little endian, flat header.

The ingest's output is defined by the pydicom path in ``training.ingest.dicom_ingest``
(read, check, de-identify by the profile, write). Most of its time there goes
to building pydicom objects for ~100 header elements it then writes back
unchanged. This codec walks the same elements as raw bytes and gives the same
output bytes, for the files it accepts:

- Explicit VR Little Endian, every element with a standard VR and a defined,
  even length, in ascending tag order, no UN element; sequences of either
  length form, walked item by item, with no character set of their own;
- native Pixel Data (OB/OW) as the last element, complete, nothing after it;
- a file the pydicom path would accept: an ingestible SOP class, Rows and
  Columns, enough pixel bytes, no burned-in annotation;
- the few elements the pydicom path decodes (and so re-encodes) already in
  the form pydicom writes them.

Every file reaches this codec only after ``training.ingest.dicom_scan`` accepted it
(size, header and nesting limits, decodable pixels), so the recursion below
is at most ``MAX_NESTING_DEPTH`` deep. Only the bytes before the Pixel Data
value are read; the value stays in the file, for the packager to stream.
Anything else returns ``None`` and the caller uses the pydicom path, which
also gives every refusal its reason. ``tests/training/ingest/test_dicom_fast.py``
checks byte-for-byte equality with the pydicom path, including under fuzzing.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, STANDARD_VR
from pydicom.valuerep import VR as VRS

from training.ingest.deid import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    INGESTIBLE_SOP_CLASSES,
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    IngestRefused,
    Profile,
    _action_for,
    _dummy_for,
    deidentify,
    remap_uid,
)
from training.ingest.dicom_ingest import FileSpan, IngestedInstance
from training.ingest.dicom_scan import Scan, scan_stream

EXPLICIT_VR_LITTLE_ENDIAN = b"1.2.840.10008.1.2.1"
REUSED_BUFFER_LIMIT = 16 << 20  # a header (all before Pixel Data) larger: the pydicom path
_reused = threading.local()
PREAMBLE = b"\x00" * 128 + b"DICM"
_LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_STANDARD_VRS = frozenset(vr.encode() for vr in STANDARD_VR - {VRS.SQ, VRS.UN})
_BINARY_VRS = frozenset({b"US", b"SS", b"UL", b"SL", b"UV", b"SV", b"AT"})
_TEXT_VRS = frozenset({b"CS", b"IS", b"UI"})
_UID = re.compile(rb"[0-9.]+(\\[0-9.]+)*")
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
_ITEM_HEAD_UNDEFINED = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED_LENGTH)
_DELIMITER = {
    tag: struct.pack("<HHI", 0xFFFE, tag & 0xFFFF, 0)
    for tag in (ITEM_DELIMITER, SEQUENCE_DELIMITER)
}

SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
MODALITY = 0x00080060
SAMPLES_PER_PIXEL = 0x00280002
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
BURNED_IN_ANNOTATION = 0x00280301
# Elements the pydicom path decodes, and so writes back in pydicom's own encoding.
_DECODED = frozenset(
    {
        SPECIFIC_CHARACTER_SET,
        SOP_CLASS_UID,
        SOP_INSTANCE_UID,
        SAMPLES_PER_PIXEL,
        NUMBER_OF_FRAMES,
        ROWS,
        COLUMNS,
        BITS_ALLOCATED,
        BURNED_IN_ANNOTATION,
        MODALITY,  # not re-encoded, but its decoded value is reported
    }
)


class _Decline(Exception):
    """Not a file for this codec: the pydicom path decides."""


def ingest_bytes(
    raw: bytes | bytearray | memoryview, *, uid_secret: bytes, profile: Profile
) -> IngestedInstance | None:
    """The whole file ``raw`` ingested in memory, as the pydicom path writes it; None if not ours.

    For tests and benchmarks: the same scan as :func:`ingest_file` runs first.
    """
    try:
        scan = scan_stream(io.BytesIO(raw))
    except IngestRefused:
        return None  # the pydicom path refuses it, by the same scan
    instance = ingest_scanned(
        scan, pixel_source=scan.source, uid_secret=uid_secret, profile=profile
    )
    if instance is None:
        return None
    return replace(instance, header=instance.data, pixels=None)


def ingest_scanned(
    scan: Scan, *, pixel_source: Path | IO[bytes], uid_secret: bytes, profile: Profile
) -> IngestedInstance | None:
    """The de-identified file for a scanned file, as the pydicom path writes it; None if not ours.

    Only the bytes before the Pixel Data value are read (into a reused buffer);
    the result's ``pixels`` names the value in ``pixel_source``.
    """
    if scan.transfer_syntax != EXPLICIT_VR_LITTLE_ENDIAN.decode() or not scan.pixel_data_is_last:
        return None
    size = scan.pixel_value_offset
    if size > REUSED_BUFFER_LIMIT:
        return None
    buffer = _read_buffer(size)
    with memoryview(buffer)[:size] as view:
        scan.source.seek(0)
        if scan.source.readinto(view) != size:  # type: ignore[attr-defined]
            return None  # the file changed under us: the pydicom path decides
        try:
            head, pixel_length = _ingest(
                view, file_size=scan.size, uid_secret=uid_secret, profile=profile
            )
        except (_Decline, struct.error, UnicodeDecodeError, ValueError):
            return None
    if pixel_length != scan.pixel_length:
        return None
    return replace(head, pixels=FileSpan(pixel_source, scan.pixel_value_offset, pixel_length))


def _read_buffer(size: int) -> bytearray:
    """A per-thread buffer reused from file to file.

    A fresh half-megabyte object per file costs as much in page faults as
    the whole header walk; the output is copied out before the next read.
    """
    buffer: bytearray | None = getattr(_reused, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(max(size, 1 << 20))
        _reused.buffer = buffer
    return buffer


def _ingest(
    raw: memoryview, *, file_size: int, uid_secret: bytes, profile: Profile
) -> tuple[IngestedInstance, int]:
    """The instance with every byte up to Pixel Data's value as ``header``, and that value's length.

    ``raw`` holds the file up to the Pixel Data value, which must end the file.
    """
    if len(raw) < 132 or raw[128:132] != b"DICM":
        raise _Decline
    walk = _Walk(raw, uid_secret=uid_secret, profile=profile)
    parts, pixel_head, pixel_length = walk.top_level(_skip_file_meta(raw), file_size=file_size)
    checked = _check_ingestible(walk.values, pixel_length=pixel_length)
    modality = _modality(walk.values, profile)
    if not walk.sop_uid_new:
        raise _Decline
    head = PREAMBLE + _file_meta(sop_class=checked.sop_class, sop_instance=walk.sop_uid_new)
    instance = IngestedInstance(
        sop_uid_original=checked.sop_uid,
        sop_uid_new=walk.sop_uid_new,
        rows=checked.rows,
        cols=checked.cols,
        modality=modality,
        header=b"".join([head, *parts, pixel_head]),
    )
    return instance, pixel_length


class _Walk:
    """One pass over the raw elements, collecting the output pieces in order.

    Each element is kept as its own bytes (K), dropped (X), or replaced by an
    element pydicom would write (Z, D, U); a kept sequence is walked item by
    item, with the same lengths (defined or undefined) pydicom writes back.
    """

    def __init__(self, raw: memoryview, *, uid_secret: bytes, profile: Profile) -> None:
        self.raw = raw
        self.uid_secret = uid_secret
        self.profile = profile
        self.values: dict[int, bytes] = {}  # top-level elements the checks read
        self.sop_uid_new = ""
        self.skipped = 0  # where the last undefined-length sequence ended

    def top_level(
        self, pos: int, *, file_size: int
    ) -> tuple[list[bytes | memoryview], memoryview, int]:
        """The pieces before Pixel Data, its element header, and its length (it ends the file)."""
        raw, size = self.raw, len(self.raw)
        constants = _deid_elements(self.profile.method)
        pending = sorted(constants)  # the de-identification's own elements not yet placed
        parts: list[bytes | memoryview] = []
        previous = 0x0002FFFF  # the dataset starts after the File Meta group
        while pos < size:
            tag, vr, start, end = _header(self.raw, pos, limit=file_size)
            if tag <= previous or (tag != PIXEL_DATA and end != UNDEFINED_LENGTH and end > size):
                raise _Decline
            previous = tag
            while pending and pending[0] <= tag:
                parts.append(constants[pending.pop(0)])
            if tag == PIXEL_DATA:
                if vr not in (b"OB", b"OW") or end != file_size or start != size:
                    raise _Decline  # encapsulated, or elements after it
                return parts, raw[pos:start], end - start
            if tag in _DECODED:
                value = bytes(raw[start:end])
                _check_round_trip(vr, value)
                self.values[tag] = value
            if tag in constants and (vr != bytes(constants[tag][4:6]) or end == UNDEFINED_LENGTH):
                # pydicom sets the new value on the existing element: its VR and length form stay.
                raise _Decline
            # An element the de-identification replaces is still walked, to find its end.
            target = parts if tag not in constants else []
            self.element(target, tag, vr, pos, start, end, top=True)
            pos = self.skipped if end == UNDEFINED_LENGTH else end
        raise _Decline  # no Pixel Data

    def element(
        self,
        parts: list[bytes | memoryview],
        tag: int,
        vr: bytes,
        pos: int,
        start: int,
        end: int,
        *,
        top: bool = False,
    ) -> None:
        if vr == b"SQ":
            self.sequence(parts, tag, start, end)
            return
        action = _action_for(BaseTag(tag), vr.decode(), self.profile)
        if action == "K":
            parts.append(self.raw[pos:end])
        elif action in ("Z", "D"):
            parts.append(_element(tag, vr, _replacement(vr, action, self.profile)))
        elif action == "U" and vr == b"UI":
            remapped = _remap(
                bytes(self.raw[start:end]), uid_secret=self.uid_secret, profile=self.profile
            )
            if tag == SOP_INSTANCE_UID and top:
                self.sop_uid_new = remapped.rstrip(b"\x00").decode("ascii")
            parts.append(_element(tag, vr, remapped))
        elif action != "X":
            raise _Decline  # a UID action on a value that is not a UI

    def sequence(self, parts: list[bytes | memoryview], tag: int, start: int, end: int) -> None:
        """A sequence as pydicom writes it once decoded and scrubbed; sets ``skipped``."""
        undefined = end == UNDEFINED_LENGTH
        limit = len(self.raw) if undefined else end
        items: list[bytes | memoryview] = []
        pos = start
        while True:
            if not undefined and pos == end:
                break
            if pos + 8 > limit:
                raise _Decline
            item_tag, length = struct.unpack_from("<II", self.raw, pos)
            item_tag = (item_tag & 0xFFFF) << 16 | item_tag >> 16
            if undefined and item_tag == SEQUENCE_DELIMITER:
                if length:
                    raise _Decline
                pos += 8
                break
            if item_tag != ITEM:
                raise _Decline
            pos = self.item(items, pos + 8, length, limit=limit)
        self.skipped = pos
        action = _action_for(BaseTag(tag), "SQ", self.profile)
        if action == "X":
            return
        if action in ("Z", "D"):
            items = []  # pydicom empties a sequence for both
        elif action != "K":
            raise _Decline
        body = b"".join(items)
        if undefined:
            head = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, UNDEFINED_LENGTH)
            parts.append(head + body + _DELIMITER[SEQUENCE_DELIMITER])
        else:
            parts.append(struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, len(body)))
            parts.append(body)

    def item(self, items: list[bytes | memoryview], pos: int, length: int, *, limit: int) -> int:
        """Scrub one item starting at ``pos``; return where the next one starts."""
        undefined = length == UNDEFINED_LENGTH
        end = limit if undefined else pos + length
        if end > limit:
            raise _Decline
        parts: list[bytes | memoryview] = []
        previous = -1
        while True:
            if not undefined and pos == end:
                break
            if undefined and pos + 8 <= limit:
                item_tag, delimiter_length = struct.unpack_from("<II", self.raw, pos)
                if (item_tag & 0xFFFF) << 16 | item_tag >> 16 == ITEM_DELIMITER:
                    if delimiter_length:
                        raise _Decline
                    pos += 8
                    break
            tag, vr, start, value_end = _header(self.raw, pos, limit=end)
            if tag <= previous or tag == SPECIFIC_CHARACTER_SET or tag >> 16 == 0xFFFE:
                raise _Decline  # out of order, a nested character set, or a stray delimiter
            previous = tag
            self.element(parts, tag, vr, pos, start, value_end)
            pos = value_end if value_end != UNDEFINED_LENGTH else self.skipped
        body = b"".join(parts)
        if undefined:
            items.append(_ITEM_HEAD_UNDEFINED + body + _DELIMITER[ITEM_DELIMITER])
        else:
            items.append(struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body)
        return pos


def _skip_file_meta(raw: memoryview) -> int:
    """The offset of the dataset after the group 0002 elements; declines other syntaxes."""
    pos, size = 132, len(raw)
    syntax = b""
    previous = 0x00010000
    while pos + 8 <= size and struct.unpack_from("<H", raw, pos)[0] == 2:
        tag, vr, start, end = _header(raw, pos, limit=size)
        if tag <= previous or vr == b"SQ":
            raise _Decline
        if tag == 0x00020010:
            syntax = bytes(raw[start:end])
        previous = tag
        pos = end
    if syntax.rstrip(b"\x00 ") != EXPLICIT_VR_LITTLE_ENDIAN:
        raise _Decline
    return pos


def _header(raw: memoryview, pos: int, *, limit: int) -> tuple[int, bytes, int, int]:
    """Tag, VR, value start and value end (UNDEFINED_LENGTH for an open sequence)."""
    if pos + 8 > limit:
        raise _Decline
    group, element = struct.unpack_from("<HH", raw, pos)
    vr = bytes(raw[pos + 4 : pos + 6])
    if vr not in _STANDARD_VRS and vr != b"SQ":
        raise _Decline
    if vr in _LONG_VRS:
        if pos + 12 > limit or raw[pos + 6] or raw[pos + 7]:
            raise _Decline  # reserved bytes that pydicom writes back as zeros
        (length,) = struct.unpack_from("<I", raw, pos + 8)
        start = pos + 12
    else:
        (length,) = struct.unpack_from("<H", raw, pos + 6)
        start = pos + 8
    if length == UNDEFINED_LENGTH:
        if vr != b"SQ":
            raise _Decline  # encapsulated pixel data or an undefined-length UN
        return group << 16 | element, vr, start, UNDEFINED_LENGTH
    if length % 2 or start + length > limit:
        raise _Decline
    return group << 16 | element, vr, start, start + length


def _check_round_trip(vr: bytes, value: bytes) -> None:
    """Decline unless pydicom decodes and re-encodes ``value`` to the same bytes."""
    if vr in _BINARY_VRS:
        return  # fixed-size integers: decoded and packed back bit for bit
    if vr not in _TEXT_VRS:
        raise _Decline
    text = value.rstrip(b" \x00")
    pad = b"\x00" if vr == b"UI" else b" "
    if value != text + pad * (len(text) % 2) or text[:1] == b" " or not text.isascii():
        raise _Decline
    if vr == b"UI" and text and not _UID.fullmatch(text):
        raise _Decline
    if vr == b"IS" and text and not text.isdigit():
        raise _Decline


@dataclass(frozen=True)
class _Checked:
    sop_class: str
    sop_uid: str
    rows: int
    cols: int


def _check_ingestible(values: dict[int, bytes], *, pixel_length: int) -> _Checked:
    """What ``deid.check_ingestible`` checks, for a file it would accept; else decline."""
    sop_class = _text(values, SOP_CLASS_UID)
    sop_uid = _text(values, SOP_INSTANCE_UID)
    if sop_class not in INGESTIBLE_SOP_CLASSES or not sop_uid or "\\" in sop_uid:
        raise _Decline
    rows, cols = _us(values, ROWS), _us(values, COLUMNS)
    frames = int(_text(values, NUMBER_OF_FRAMES) or 0) or 1
    samples = _us(values, SAMPLES_PER_PIXEL, default=1) or 1
    bits = _us(values, BITS_ALLOCATED, default=0)
    if not rows or not cols or pixel_length < (rows * cols * frames * samples * bits + 7) // 8:
        raise _Decline
    if _text(values, BURNED_IN_ANNOTATION).upper() not in ("", "NO"):
        raise _Decline
    return _Checked(sop_class=sop_class, sop_uid=sop_uid, rows=rows, cols=cols)


def _modality(values: dict[int, bytes], profile: Profile) -> str:
    if MODALITY not in values:
        return ""
    if _action_for(BaseTag(MODALITY), "CS", profile) != "K":
        raise _Decline
    modality = _text(values, MODALITY)
    if "\\" in modality:
        raise _Decline
    return modality


def _text(values: dict[int, bytes], tag: int) -> str:
    return values.get(tag, b"").rstrip(b" \x00").decode("ascii")


def _us(values: dict[int, bytes], tag: int, *, default: int | None = None) -> int:
    value = values.get(tag)
    if value is None and default is not None:
        return default
    if value is None or len(value) != 2:
        raise _Decline
    return int.from_bytes(value, "little")


def _remap(value: bytes, *, uid_secret: bytes, profile: Profile) -> bytes:
    """A UI value remapped as the pydicom path remaps it, padded as pydicom pads it."""
    if not value.isascii():
        raise _Decline
    text = value.decode("ascii")
    while text.endswith((" ", "\x00")):
        text = text[:-1]
    remapped = "\\".join(
        remap_uid(v, uid_secret=uid_secret, profile=profile) if v else v for v in text.split("\\")
    ).encode("ascii")
    return remapped + b"\x00" * (len(remapped) % 2)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise _Decline
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _replacement(vr: bytes, action: str, profile: Profile) -> bytes:
    """The value bytes pydicom writes for an emptied (Z) or dummy (D) element of ``vr``."""
    name = vr.decode()
    if action == "Z":
        return _empty_bytes(name)
    return _dummy_bytes(name, _dummy_for(name, profile))


@functools.cache
def _empty_bytes(vr: str) -> bytes:
    return _value_bytes(vr, empty_value_for_VR(vr))


@functools.cache
def _dummy_bytes(vr: str, dummy: str | int) -> bytes:
    return _value_bytes(vr, dummy)


@functools.cache
def _deid_elements(method: str) -> dict[int, bytes]:
    """The elements ``deidentify`` adds to every dataset (they depend on the method only)."""
    profile = Profile(
        name="",
        method=method,
        exact={},
        wildcards=(),
        dummy={},
        registered_uid_root="",
        uid_prefix="",
    )
    added = deidentify(Dataset(), uid_secret=b"", profile=profile)
    return {int(elem.tag): _encoded(elem) for elem in added}


def _encoded(elem: DataElement) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_data_element(buffer, elem)
    return buffer.getvalue()


def _value_bytes(vr: str, value: object) -> bytes:
    encoded = _encoded(DataElement(0x00091000, vr, value))
    return encoded[12:] if vr in EXPLICIT_VR_LENGTH_32 else encoded[8:]


def _file_meta(*, sop_class: str, sop_instance: str) -> bytes:
    """Group 0002 as ``pydicom.dcmwrite(enforce_file_format=True)`` writes ours."""
    body = b"".join(
        (
            struct.pack("<HH2sHI", 2, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _element(0x00020002, b"UI", _padded(sop_class, b"\x00")),
            _element(0x00020003, b"UI", _padded(sop_instance, b"\x00")),
            _element(0x00020010, b"UI", EXPLICIT_VR_LITTLE_ENDIAN + b"\x00"),
            _element(0x00020012, b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\x00")),
            _element(0x00020013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME, b" ")),
        )
    )
    return struct.pack("<HH2sHI", 2, 0x0000, b"UL", 4, len(body)) + body


def _padded(text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    return value + pad * (len(value) % 2)
