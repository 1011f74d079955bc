"""The first look at every upload: a streaming, non-recursive walk that bounds what follows.

Before pydicom or the raw codec (``training.ingest.dicom_fast``) sees a file, this
walk reads its element headers once, skipping values, with an explicit stack
instead of recursion. It refuses, with a reason, whatever could make the
ingest hang, crash or over-allocate (docs/ingest.md):

- a file larger than the per-file cap, or a header (everything but Pixel
  Data) larger than :data:`MAX_HEADER_BYTES` or with more than
  :data:`MAX_ELEMENTS` elements;
- sequences nested deeper than :data:`MAX_NESTING_DEPTH`, so neither path
  recurses further than that;
- truncation anywhere, lengths that overrun their sequence or item, garbage;
- a transfer syntax or a pixel layout a node cannot decode
  (``training.ingest.decodable``), checked before Pixel Data is read.

A deflated file is inflated here, streamed (``zlib.decompressobj`` with
``max_length``) into an unnamed temporary file that holds the same data set
as Explicit VR Little Endian; inflation stops at the smaller of the cap and
what the header declares. Pure Python and pydicom's dictionary only: the
browser runs this too.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydicom.datadict import dictionary_VR

from training.ingest.decodable import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PixelHeader,
    check_decodable,
    check_transfer_syntax,
)
from training.ingest.deid import PIXEL_DATA, UNDEFINED_LENGTH, IngestRefused, check_sop_class

DEFAULT_MAX_FILE_BYTES = 1 << 30  # 1 GiB: a large multi-frame CT; INGEST_MAX_FILE_BYTES
MAX_HEADER_BYTES = 16 << 20  # every byte but Pixel Data's value, sequences included
MAX_ELEMENTS = 100_000  # elements and items; an enhanced CT of 2,000 frames has ~50,000
MAX_NESTING_DEPTH = 16  # sequences within sequences; real CT and MR headers use < 6
MAX_FILE_META_BYTES = 64 << 10
_BLOCK = 1 << 20
_COMPRESSED_BLOCK = 64 << 10

ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
TRANSFER_SYNTAX_UID = 0x00020010
SOP_CLASS_UID = 0x00080016
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT"}
    | {b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
_ITEM_TAG_BYTES = struct.pack("<HH", 0xFFFE, 0xE000)

SAMPLES_PER_PIXEL = 0x00280002
PHOTOMETRIC_INTERPRETATION = 0x00280004
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
HIGH_BIT = 0x00280102
PIXEL_REPRESENTATION = 0x00280103
_VALUE_TAGS = {SOP_CLASS_UID: "SOP Class UID"}
_PIXEL_TAGS = {
    SAMPLES_PER_PIXEL: "Samples per Pixel",
    PHOTOMETRIC_INTERPRETATION: "Photometric Interpretation",
    NUMBER_OF_FRAMES: "Number of Frames",
    ROWS: "Rows",
    COLUMNS: "Columns",
    BITS_ALLOCATED: "Bits Allocated",
    BITS_STORED: "Bits Stored",
    HIGH_BIT: "High Bit",
    PIXEL_REPRESENTATION: "Pixel Representation",
}


@dataclass
class Scan:
    """Where things are in the file to ingest (the original, or its inflated copy)."""

    source: IO[bytes]
    owned: bool  # ``source`` is a temporary file of ours (an inflated deflated file)
    size: int
    transfer_syntax: str
    pixel_offset: int  # the Pixel Data element's first byte (its tag)
    pixel_value_offset: int
    pixel_length: int
    pixel: PixelHeader
    elements: int = 0
    depth: int = 0

    @property
    def pixel_data_is_last(self) -> bool:
        return self.pixel_value_offset + self.pixel_length == self.size

    def close(self) -> None:
        self.source.close()


def scan_file(path: str | Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Scan:
    """Check the file at ``path``; the returned :class:`Scan` holds it open (close it)."""
    try:
        source = Path(path).open("rb")  # noqa: SIM115 - handed to the Scan, or closed here
    except OSError as exc:
        raise IngestRefused(f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        return scan_stream(source, max_file_bytes=max_file_bytes)
    except BaseException:
        source.close()
        raise


def scan_stream(source: IO[bytes], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Scan:
    """Check the seekable binary ``source``, read from its start."""
    size = source.seek(0, os.SEEK_END)
    source.seek(0)
    if size > max_file_bytes:
        raise IngestRefused(
            f"the file is {_size(size)}, more than the per-file cap of {_size(max_file_bytes)} "
            "(raise it with --max-file-bytes or INGEST_MAX_FILE_BYTES if the file is genuine)"
        )
    preamble = source.read(132)
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        raise IngestRefused("not a DICOM Part 10 file: no 128-byte preamble and 'DICM' prefix")
    meta, syntax, meta_sop_class = _read_file_meta(source)
    if meta_sop_class:  # what the file is matters more to the uploader than how it is encoded
        check_sop_class(meta_sop_class)
    check_transfer_syntax(syntax)
    if syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        stream = _Stream(source.read, start=source.tell(), size=size, seek=source.seek)
        walk = _Walk(stream, implicit=syntax == IMPLICIT_VR_LITTLE_ENDIAN, cap=max_file_bytes)
        walk.meta_sop_class = meta_sop_class
        walk.run()
        return walk.scan(source, owned=False, size=size, syntax=syntax)
    return _scan_deflated(source, preamble, meta, cap=max_file_bytes, sop_class=meta_sop_class)


def _scan_deflated(
    source: IO[bytes], preamble: bytes, meta: bytes, *, cap: int, sop_class: str
) -> Scan:
    inflated = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the Scan, or closed here
    try:
        inflated.write(preamble)
        inflated.write(_explicit_meta(meta))
        inflater = _Inflater(source, limit=cap - inflated.tell())
        stream = _Stream(inflater.pull, start=inflated.tell(), sink=inflated.write)
        walk = _Walk(stream, implicit=False, cap=cap)
        walk.meta_sop_class = sop_class
        try:
            walk.run()
        except zlib.error as exc:
            raise IngestRefused(f"the deflated data set is corrupt: {exc}") from exc
        size = inflated.tell()
        inflated.flush()
        return walk.scan(inflated, owned=True, size=size, syntax=EXPLICIT_VR_LITTLE_ENDIAN)
    except BaseException:
        inflated.close()
        raise


def _read_file_meta(source: IO[bytes]) -> tuple[bytes, str, str]:
    """The group 0002 elements' bytes (Explicit VR Little Endian), transfer syntax, SOP class."""
    start = source.tell()
    syntax: str | None = None
    sop_class = ""
    while True:
        head = source.read(8)
        if len(head) < 8 or struct.unpack_from("<H", head)[0] != 2:
            source.seek(-len(head), os.SEEK_CUR)
            break
        tag = _tag(head)
        vr = head[4:6]
        if vr in _LONG_VRS:
            extra = source.read(4)
            if len(extra) < 4:
                raise _truncated(f"File Meta element {_tag_text(tag)}", 4 - len(extra))
            (length,) = struct.unpack("<I", extra)
        elif vr in _SHORT_VRS:
            (length,) = struct.unpack_from("<H", head, 6)
        else:
            raise IngestRefused(
                f"the File Meta Information is not Explicit VR Little Endian: element "
                f"{_tag_text(tag)} has VR {vr!r}"
            )
        if source.tell() + length - start > MAX_FILE_META_BYTES or vr == b"SQ":
            raise IngestRefused(
                f"the File Meta Information is malformed at {_tag_text(tag)}: more than "
                f"{MAX_FILE_META_BYTES // 1024} KiB or a sequence"
            )
        value = source.read(length)
        if len(value) < length:
            raise _truncated(f"File Meta element {_tag_text(tag)}", length - len(value))
        if tag == TRANSFER_SYNTAX_UID:
            syntax = value.rstrip(b"\x00 ").decode("ascii", "replace")
        elif tag == MEDIA_STORAGE_SOP_CLASS_UID:
            sop_class = value.strip(b"\x00 ").decode("ascii", "replace")
    end = source.tell()
    if not syntax:
        raise IngestRefused("no Transfer Syntax UID in the File Meta Information")
    source.seek(start)
    return source.read(end - start), syntax, sop_class


def _explicit_meta(meta: bytes) -> bytes:
    """The File Meta elements with the transfer syntax set to Explicit VR Little Endian."""
    out: list[bytes] = []
    pos = 0
    while pos < len(meta):
        tag, vr = _tag(meta[pos : pos + 4]), meta[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", meta, pos + 8)
            end = pos + 12 + length
        else:
            (length,) = struct.unpack_from("<H", meta, pos + 6)
            end = pos + 8 + length
        if tag == TRANSFER_SYNTAX_UID:
            value = EXPLICIT_VR_LITTLE_ENDIAN.encode() + b"\x00"
            out.append(struct.pack("<HH2sH", 2, 0x0010, b"UI", len(value)) + value)
        elif tag != 0x00020000:  # the group length is recomputed below
            out.append(meta[pos:end])
        pos = end
    body = b"".join(out)
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


class _Inflater:
    """Raw-deflate bytes in, at most ``limit`` inflated bytes out, a block at a time."""

    def __init__(self, source: IO[bytes], *, limit: int) -> None:
        self._source = source
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._limit = limit
        self.total = 0

    def pull(self, wanted: int) -> bytes:
        while True:
            if self._inflate.eof:  # checked first: the tail may keep bytes after the end
                return b""
            if self._inflate.unconsumed_tail:
                data = self._inflate.decompress(self._inflate.unconsumed_tail, wanted)
            else:
                compressed = self._source.read(_COMPRESSED_BLOCK)
                if not compressed:
                    return b""  # the deflate stream ends early: the walk reports truncation
                data = self._inflate.decompress(compressed, wanted)
            if data:
                self.total += len(data)
                if self.total > self._limit:
                    raise IngestRefused(
                        f"the deflated data set inflates beyond the per-file cap of "
                        f"{_size(self._limit)}"
                    )
                return data


class _Stream:
    """Sequential reads and skips over the data set, counting the offset; EOF-aware."""

    def __init__(
        self,
        pull: Callable[[int], bytes],
        *,
        start: int,
        size: int | None = None,
        seek: Callable[[int], int] | None = None,
        sink: Callable[[bytes], object] | None = None,
    ) -> None:
        self._pull = pull
        self._seek = seek
        self._sink = sink
        self.size = size
        self.pos = start
        self._ahead = b""

    def read(self, n: int) -> bytes:
        data = self.peek(n)
        self._ahead = self._ahead[len(data) :]
        self.pos += len(data)
        if self._sink is not None:
            self._sink(data)
        return data

    def peek(self, n: int) -> bytes:
        while len(self._ahead) < n:
            piece = self._pull(n - len(self._ahead))
            if not piece:
                break
            self._ahead += piece
        return self._ahead[:n]

    def skip(self, n: int) -> int:
        """Skip up to ``n`` bytes; fewer only at the end of the data."""
        done = len(self.read(min(n, len(self._ahead))))
        if self._seek is not None and self.size is not None and done < n:
            step = max(0, min(n - done, self.size - self.pos))  # nothing is left ahead here
            self._seek(self.pos + step)
            self.pos += step
            return done + step
        while done < n:
            piece = self.read(min(_BLOCK, n - done))
            if not piece:
                break
            done += len(piece)
        return done


@dataclass
class _Frame:
    sequence: bool  # a sequence (holds items) or an item (holds elements)
    end: int | None  # None: undefined length, ends at its delimiter
    implicit: bool
    tag: int


@dataclass
class _Walk:
    stream: _Stream
    implicit: bool
    cap: int
    stack: list[_Frame] = field(default_factory=list)
    values: dict[int, bytes] = field(default_factory=dict)
    header_bytes: int = 0
    elements: int = 0
    depth: int = 0
    pixel: tuple[int, int, int, PixelHeader] | None = None
    meta_sop_class: str = ""

    def run(self) -> None:
        while True:
            frame = self.stack[-1] if self.stack else None
            if frame is not None and frame.end is not None and self.stream.pos >= frame.end:
                if self.stream.pos > frame.end:
                    raise IngestRefused(
                        f"an element overruns its {_kind(frame)} {_tag_text(frame.tag)} "
                        f"at byte {frame.end}: the file is corrupt"
                    )
                self.stack.pop()
                continue
            if frame is not None and frame.sequence:
                self._item_header(frame)
            elif not self._element(frame):
                return

    def scan(self, source: IO[bytes], *, owned: bool, size: int, syntax: str) -> Scan:
        self._check_sop_class()
        if self.pixel is None:
            raise IngestRefused("no Pixel Data (7FE0,0010): not an image")
        offset, value_offset, length, header = self.pixel
        return Scan(
            source=source,
            owned=owned,
            size=size,
            transfer_syntax=syntax,
            pixel_offset=offset,
            pixel_value_offset=value_offset,
            pixel_length=length,
            pixel=header,
            elements=self.elements,
            depth=self.depth,
        )

    def _count(self, nbytes: int, tag: int) -> None:
        self.elements += 1
        self.header_bytes += nbytes
        if self.elements > MAX_ELEMENTS:
            raise IngestRefused(
                f"the header has more than {MAX_ELEMENTS:,} elements: not a CT or MR slice"
            )
        if self.header_bytes > MAX_HEADER_BYTES:
            raise IngestRefused(
                f"the header (every element but Pixel Data) exceeds {_size(MAX_HEADER_BYTES)} "
                f"at {_tag_text(tag)}"
            )

    def _item_header(self, frame: _Frame) -> None:
        at = self.stream.pos
        head = self._exactly(8, f"an item of sequence {_tag_text(frame.tag)}")
        tag, length = _tag(head), struct.unpack_from("<I", head, 4)[0]
        if tag == SEQUENCE_DELIMITER and frame.end is None:
            self.stack.pop()
            return
        if tag != ITEM:
            raise IngestRefused(
                f"sequence {_tag_text(frame.tag)} holds {_tag_text(tag)} at byte {at} "
                "where an item belongs: the file is corrupt"
            )
        self._count(8, frame.tag)  # the item's values are counted as they are walked
        end = None if length == UNDEFINED_LENGTH else self.stream.pos + length
        if end is not None:
            self._check_within(end, frame.tag)
        self.stack.append(_Frame(sequence=False, end=end, implicit=frame.implicit, tag=frame.tag))

    def _element(self, frame: _Frame | None) -> bool:
        """Walk one element of the data set or of an item; False at the end of the file."""
        at = self.stream.pos
        first = self.stream.read(4)
        if not first and frame is None:
            return False
        where = f"the element at byte {at}"
        if len(first) < 4:
            raise _truncated(where, 4 - len(first))
        tag = _tag(first)
        if tag >> 16 == 0xFFFE:
            self._exactly(4, where)  # its length, zero for a delimiter
            if tag == ITEM_DELIMITER and frame is not None and frame.end is None:
                self.stack.pop()
                return True
            raise IngestRefused(f"a stray {_tag_text(tag)} at byte {at}: the file is corrupt")
        implicit = frame.implicit if frame is not None else self.implicit
        vr, length = self._vr_and_length(tag, implicit=implicit, where=where)
        header_size = self.stream.pos - at
        if tag == PIXEL_DATA and frame is None:
            self._pixel_data(tag, at, length)
            return True
        if length == UNDEFINED_LENGTH and vr not in (b"SQ", b"UN", None):
            raise IngestRefused(
                f"{_tag_text(tag)} has an undefined length but is not a sequence "
                "(compressed pixel data in an uncompressed transfer syntax?)"
            )
        size = self.stream.size
        if size is not None and length != UNDEFINED_LENGTH and self.stream.pos + length > size:
            raise _truncated(f"element {_tag_text(tag)}", self.stream.pos + length - size)
        if length != UNDEFINED_LENGTH:
            self._check_within(self.stream.pos + length, tag)
        if self._is_sequence(tag, vr, length):
            self._count(header_size, tag)  # its items are counted as they are walked
            self._open_sequence(tag, vr, length, implicit=implicit)
            return True
        self._count(header_size + length, tag)
        if frame is None and (tag in _PIXEL_TAGS or tag in _VALUE_TAGS):
            if length > 256:
                raise IngestRefused(
                    f"{_tag_text(tag)} is {length} bytes long: the header is corrupt"
                )
            self.values[tag] = self._exactly(length, f"element {_tag_text(tag)}")
            return True
        skipped = self.stream.skip(length)
        if skipped < length:
            raise _truncated(f"element {_tag_text(tag)}", length - skipped)
        return True

    def _vr_and_length(self, tag: int, *, implicit: bool, where: str) -> tuple[bytes | None, int]:
        if implicit:
            return None, struct.unpack("<I", self._exactly(4, where))[0]
        head = self._exactly(4, where)
        vr = head[:2]
        if vr in _LONG_VRS:
            return vr, struct.unpack("<I", self._exactly(4, where))[0]
        if vr in _SHORT_VRS:
            return vr, struct.unpack_from("<H", head, 2)[0]
        raise IngestRefused(
            f"element {_tag_text(tag)} at byte {self.stream.pos - 8} has no valid VR "
            f"({bytes(vr)!r}): the file is corrupt or not the transfer syntax it declares"
        )

    def _is_sequence(self, tag: int, vr: bytes | None, length: int) -> bool:
        """As pydicom decides: SQ, any undefined length, or a UN/unknown value made of items."""
        if vr == b"SQ" or length == UNDEFINED_LENGTH:
            return True
        if vr is None:  # implicit VR: the dictionary's, if it knows the tag
            try:
                if dictionary_VR(tag) == "SQ":
                    return True
                if not tag >> 16 & 1:
                    return False
            except KeyError:
                pass
        elif vr != b"UN":
            return False
        return length >= 8 and self.stream.peek(4) == _ITEM_TAG_BYTES

    def _open_sequence(self, tag: int, vr: bytes | None, length: int, *, implicit: bool) -> None:
        depth = sum(1 for f in self.stack if f.sequence) + 1
        if depth > MAX_NESTING_DEPTH:
            raise IngestRefused(
                f"sequences nest deeper than {MAX_NESTING_DEPTH} levels at {_tag_text(tag)}: "
                "no CT or MR header needs that; the file is malformed or hostile"
            )
        self.depth = max(self.depth, depth)
        end = None if length == UNDEFINED_LENGTH else self.stream.pos + length
        inner_implicit = implicit or vr == b"UN"
        self.stack.append(_Frame(sequence=True, end=end, implicit=inner_implicit, tag=tag))

    def _pixel_data(self, tag: int, at: int, length: int) -> None:
        if length == UNDEFINED_LENGTH:
            raise IngestRefused(
                "Pixel Data is encapsulated (compressed) in an uncompressed transfer syntax"
            )
        if self.pixel is not None:
            raise IngestRefused("Pixel Data (7FE0,0010) appears twice")
        self._check_sop_class()
        header = _pixel_header(self.values)
        if header.pixel_bytes > self.cap:
            raise IngestRefused(
                f"the header declares {_size(header.pixel_bytes)} of pixel data, more than the "
                f"per-file cap of {_size(self.cap)}"
            )
        check_decodable(header, pixel_length=length)
        value_offset = self.stream.pos
        skipped = self.stream.skip(length)
        if skipped < length:
            raise IngestRefused(f"the file is truncated: Pixel Data lacks {length - skipped} bytes")
        self.pixel = (at, value_offset, length, header)

    def _check_within(self, end: int, tag: int) -> None:
        """Refuse a value that would end beyond the nearest sequence or item of known length."""
        for frame in reversed(self.stack):
            if frame.end is not None:
                if end > frame.end:
                    raise IngestRefused(
                        f"{_tag_text(tag)} overruns its {_kind(frame)} {_tag_text(frame.tag)}: "
                        "the file is corrupt"
                    )
                return

    def _check_sop_class(self) -> None:
        check_sop_class(_text(self.values, SOP_CLASS_UID) or self.meta_sop_class)

    def _exactly(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) < n:
            raise _truncated(what, n - len(data))
        return data


def _pixel_header(values: dict[int, bytes]) -> PixelHeader:
    photometric = _text(values, PHOTOMETRIC_INTERPRETATION)
    if not photometric:
        raise IngestRefused("no Photometric Interpretation (0028,0004)")
    frames_text = _text(values, NUMBER_OF_FRAMES) or "1"
    try:
        frames = int(frames_text)
    except ValueError:
        raise IngestRefused(
            f"Number of Frames (0028,0008) is {frames_text!r}, not an integer"
        ) from None
    return PixelHeader(
        rows=_us(values, ROWS),
        cols=_us(values, COLUMNS),
        frames=frames,
        samples_per_pixel=_us(values, SAMPLES_PER_PIXEL),
        photometric=photometric,
        bits_allocated=_us(values, BITS_ALLOCATED),
        bits_stored=_us(values, BITS_STORED),
        high_bit=_us(values, HIGH_BIT),
        pixel_representation=_us(values, PIXEL_REPRESENTATION),
    )


def _us(values: dict[int, bytes], tag: int) -> int:
    value = values.get(tag)
    name = f"{_PIXEL_TAGS[tag]} {_tag_text(tag)}"
    if value is None or not value:
        if tag in (ROWS, COLUMNS):
            raise IngestRefused("missing Rows or Columns")
        raise IngestRefused(f"no {name}: a node cannot decode the pixels without it")
    if len(value) != 2:
        raise IngestRefused(f"{name} must be one 16-bit unsigned value, not {len(value)} bytes")
    return int.from_bytes(value, "little")


def _text(values: dict[int, bytes], tag: int) -> str:
    return values.get(tag, b"").strip(b" \x00").decode("ascii", "replace")


def _tag(head: bytes) -> int:
    group, element = struct.unpack_from("<HH", head)
    return group << 16 | element


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _kind(frame: _Frame) -> str:
    return "sequence" if frame.sequence else "item in sequence"


def _truncated(what: str, missing: int) -> IngestRefused:
    return IngestRefused(f"the file is truncated: {what} lacks {missing} bytes")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "MAX_ELEMENTS",
    "MAX_HEADER_BYTES",
    "MAX_NESTING_DEPTH",
    "Scan",
    "scan_file",
    "scan_stream",
]
