"""Lesion boxes attached to the instances of a dataset (docs/annotations.md).

One JSON format, ``medchain-annotations/1``, keyed by SOP Instance UID. Boxes
are integer pixel coordinates, half-open: ``0 <= x0 < x1 <= Columns`` and
``0 <= y0 < y1 <= Rows`` (DESIGN.md, "Boxes").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT = "medchain-annotations/1"
MAX_LABEL_LENGTH = 64
_BOX_KEYS = ("x0", "y0", "x1", "y1", "label")


class AnnotationError(ValueError):
    """The annotation file is malformed or does not fit the dataset's images."""


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int
    label: str = "lesion"

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def as_json(self) -> dict[str, int | str]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "label": self.label}


@dataclass(frozen=True)
class Annotations:
    """Boxes per SOP Instance UID; an instance absent here has no lesions."""

    instances: Mapping[str, tuple[Box, ...]] = field(default_factory=dict)

    def boxes(self, sop_instance_uid: str) -> tuple[Box, ...]:
        return self.instances.get(sop_instance_uid, ())

    def to_json(self) -> bytes:
        """Canonical encoding: sorted UIDs, one instance per line, UTF-8."""
        lines = [
            f"  {json.dumps(uid)}: " + json.dumps({"boxes": [box.as_json() for box in boxes]})
            for uid, boxes in sorted(self.instances.items())
        ]
        body = ",\n".join(lines)
        text = f'{{"format": "{FORMAT}", "instances": {{\n{body}\n}}}}\n'
        return text.encode("utf-8")


def parse_annotations(raw: bytes, instances: Mapping[str, tuple[int, int]]) -> Annotations:
    """Parse and validate ``raw`` against ``instances`` (SOP Instance UID -> (rows, cols)).

    Raises :class:`AnnotationError` naming the instance and box at fault; never
    any other exception, whatever the bytes.
    """
    doc = _load_json(raw)
    if not isinstance(doc, dict):
        raise AnnotationError("annotations must be a JSON object")
    unknown = sorted(set(doc) - {"format", "instances"})
    if unknown:
        raise AnnotationError(f"unknown top-level key(s): {', '.join(map(repr, unknown))}")
    if doc.get("format") != FORMAT:
        raise AnnotationError(f"'format' must be {FORMAT!r}, got {doc.get('format')!r}")
    entries = doc.get("instances")
    if not isinstance(entries, dict):
        raise AnnotationError("'instances' must be an object keyed by SOP Instance UID")
    parsed: dict[str, tuple[Box, ...]] = {}
    for uid, entry in entries.items():
        if uid not in instances:
            raise AnnotationError(f"instance {uid!r}: not an image of this dataset")
        rows, cols = instances[uid]
        parsed[uid] = _parse_instance(uid, entry, rows=rows, cols=cols)
    return Annotations(instances=parsed)


def remap_uids(annotations: Annotations, uid_map: Mapping[str, str]) -> Annotations:
    """Re-key the annotations by de-identified UIDs (``uid_map``: original -> new)."""
    remapped: dict[str, tuple[Box, ...]] = {}
    for uid, boxes in annotations.instances.items():
        if uid not in uid_map:
            raise AnnotationError(f"instance {uid!r}: no de-identified UID for it")
        new_uid = uid_map[uid]
        if new_uid in remapped:
            raise AnnotationError(f"instance {uid!r}: its new UID {new_uid!r} is already used")
        remapped[new_uid] = boxes
    return Annotations(instances=remapped)


# The format nests four deep; anything far deeper is refused before parsing, since
# a process that raised its recursion limit (py-evm does) can overflow the C stack.
MAX_NESTING = 32


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _load_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        if _nesting_depth(text) > MAX_NESTING:
            raise AnnotationError(
                f"annotations are not valid JSON: nested deeper than {MAX_NESTING} levels"
            )
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except AnnotationError:
        raise
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            f"annotations are not UTF-8: {exc.reason} at byte {exc.start}"
        ) from exc
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"annotations are not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from exc
    except (RecursionError, ValueError) as exc:
        raise AnnotationError(f"annotations are not valid JSON: {exc}") from exc


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise AnnotationError(f"key {key!r} appears more than once in the same object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise AnnotationError(f"{name} is not valid JSON")


def _parse_instance(uid: str, entry: Any, *, rows: int, cols: int) -> tuple[Box, ...]:
    if not isinstance(entry, dict) or set(entry) != {"boxes"}:
        raise AnnotationError(f'instance {uid!r}: must be an object {{"boxes": [...]}}')
    boxes = entry["boxes"]
    if not isinstance(boxes, list):
        raise AnnotationError(f"instance {uid!r}: 'boxes' must be a list")
    return tuple(_parse_box(uid, i, box, rows=rows, cols=cols) for i, box in enumerate(boxes))


def _parse_box(uid: str, index: int, box: Any, *, rows: int, cols: int) -> Box:
    where = f"instance {uid!r}, box {index}"
    if not isinstance(box, dict):
        raise AnnotationError(f"{where}: must be an object with x0, y0, x1, y1, label")
    missing = [k for k in _BOX_KEYS if k not in box]
    extra = sorted(set(box) - set(_BOX_KEYS))
    if missing or extra:
        raise AnnotationError(f"{where}: missing {missing} / unknown {extra} keys")
    for key in _BOX_KEYS[:4]:
        value = box[key]
        # bool is an int in Python; 3.0 is not an integer coordinate.
        if not isinstance(value, int) or isinstance(value, bool):
            raise AnnotationError(f"{where}: {key}={value!r} is not an integer")
    label = box["label"]
    if not isinstance(label, str) or not label or len(label) > MAX_LABEL_LENGTH:
        raise AnnotationError(f"{where}: label must be a non-empty string of at most 64 chars")
    x0, y0, x1, y1 = box["x0"], box["y0"], box["x1"], box["y1"]
    coords = f"({x0}, {y0}, {x1}, {y1})"
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(f"{where}: box {coords} is empty (need x0 < x1 and y0 < y1)")
    if x0 < 0 or y0 < 0 or x1 > cols or y1 > rows:
        raise AnnotationError(
            f"{where}: box {coords} lies outside the {cols}x{rows} image "
            f"(need 0 <= x0 < x1 <= {cols}, 0 <= y0 < y1 <= {rows})"
        )
    return Box(x0=x0, y0=y0, x1=x1, y1=y1, label=label)
