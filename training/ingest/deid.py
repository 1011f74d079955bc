"""De-identification by the DICOM PS3.15 Annex E basic profile, read from one table.

The table is ``deid_profile.json`` beside this file: tag -> action (D, Z, X,
K, U), plus the defaults for what it does not list. Every implementation
(this one, the browser's) reads that same file, so they cannot drift.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import STANDARD_VR, VR

PROFILE_PATH = Path(__file__).with_name("deid_profile.json")
ACTIONS = frozenset("DZXKU")
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
BURNED_IN_ANNOTATION = 0x00280301
_RULE_CACHE_SIZE = 1 << 16
_UNDECODED_VRS = frozenset(STANDARD_VR - {VR.UN, VR.SQ})
_BINARY_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})

# 2.25 + first 16 bytes of SHA-256(b"medchain/implementation/v1"), as an integer.
IMPLEMENTATION_CLASS_UID = "2.25.45888706983278914340168963852858410907"
IMPLEMENTATION_VERSION_NAME = "MEDCHAIN_1"

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
INGESTIBLE_SOP_CLASSES = {
    CT_IMAGE_STORAGE: "CT Image Storage",
    ENHANCED_CT_IMAGE_STORAGE: "Enhanced CT Image Storage",
    MR_IMAGE_STORAGE: "MR Image Storage",
    ENHANCED_MR_IMAGE_STORAGE: "Enhanced MR Image Storage",
}


class IngestRefused(Exception):
    """A file that must not enter a dataset; ``reason`` says why, for the uploader."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TagRule:
    pattern: str
    keyword: str
    standard: str
    action: str

    @property
    def mask(self) -> int:
        return int("".join("0" if c == "x" else "F" for c in self.pattern), 16)

    @property
    def value(self) -> int:
        return int(self.pattern.replace("x", "0"), 16)


@dataclass(frozen=True)
class Profile:
    name: str
    method: str
    exact: dict[int, TagRule]
    wildcards: tuple[TagRule, ...]
    dummy: dict[str, str]
    registered_uid_root: str
    uid_prefix: str
    private_action: str = "X"
    group_length_action: str = "X"
    unlisted_action: str = "K"
    unlisted_ui_action: str = "U"
    # Looked-up rules by tag: the wildcard scan is per tag, not per element.
    _rules: dict[int, TagRule | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rule_for(self, tag: int) -> TagRule | None:
        tag = int(tag)
        try:
            return self._rules[tag]
        except KeyError:
            pass
        rule = self._lookup(tag)
        if len(self._rules) < _RULE_CACHE_SIZE:
            self._rules[tag] = rule
        return rule

    def _lookup(self, tag: int) -> TagRule | None:
        rule = self.exact.get(tag)
        if rule is not None:
            return rule
        for wild in self.wildcards:
            if tag & wild.mask == wild.value:
                return wild
        return None


@functools.cache
def load_profile(path: Path = PROFILE_PATH) -> Profile:
    doc = json.loads(path.read_text(encoding="utf-8"))
    exact: dict[int, TagRule] = {}
    wildcards: list[TagRule] = []
    for row in doc["tags"]:
        rule = TagRule(
            pattern=row["tag"],
            keyword=row["keyword"],
            standard=row["standard"],
            action=row["action"],
        )
        if rule.action not in ACTIONS:
            raise ValueError(f"{path}: unknown action {rule.action!r} for {rule.pattern}")
        if "x" in rule.pattern:
            wildcards.append(rule)
        else:
            exact[rule.value] = rule
    defaults = doc["defaults"]
    for key in ("private", "group_length", "unlisted", "unlisted_ui"):
        if defaults[key] not in ACTIONS:
            raise ValueError(f"{path}: unknown default action {defaults[key]!r} for {key}")
    return Profile(
        name=doc["profile"],
        method=doc["deidentification_method"],
        exact=exact,
        wildcards=tuple(wildcards),
        dummy=dict(doc["dummy"]),
        registered_uid_root=defaults["registered_uid_root"],
        uid_prefix=defaults["uid_prefix"],
        private_action=defaults["private"],
        group_length_action=defaults["group_length"],
        unlisted_action=defaults["unlisted"],
        unlisted_ui_action=defaults["unlisted_ui"],
    )


def remap_uid(uid: str, *, uid_secret: bytes, profile: Profile | None = None) -> str:
    """``2.25.<int>`` from HMAC-SHA256(owner secret, UID): stable, unlinkable without the secret."""
    profile = profile or load_profile()
    uid = uid.strip(" \x00")
    if not uid or uid.startswith(profile.registered_uid_root):
        return uid
    digest = hmac.new(uid_secret, uid.encode("utf-8"), hashlib.sha256).digest()
    return profile.uid_prefix + str(int.from_bytes(digest[:16], "big"))


def check_ingestible(ds: Dataset) -> None:
    """Raise :class:`IngestRefused` unless ``ds`` is a CT/MR image we may train on."""
    check_sop_class(_sop_class(ds))
    if PIXEL_DATA not in ds:
        raise IngestRefused("no Pixel Data (7FE0,0010): not an image")
    if "Rows" not in ds or "Columns" not in ds or not ds.Rows or not ds.Columns:
        raise IngestRefused("missing Rows or Columns")
    _check_pixel_data_length(ds)
    burned_in = ds.get(BURNED_IN_ANNOTATION)
    value = str(burned_in.value or "").strip().upper() if burned_in is not None else ""
    if value == "YES":
        raise IngestRefused(
            "Burned In Annotation (0028,0301) is YES: text may identify the patient"
        )
    if value not in ("", "NO"):
        raise IngestRefused(f"Burned In Annotation (0028,0301) has unrecognised value {value!r}")


def check_sop_class(sop_class: str) -> None:
    """Raise :class:`IngestRefused` unless ``sop_class`` is one we train on."""
    if not sop_class:
        raise IngestRefused("no SOP Class UID: not a DICOM composite instance")
    if sop_class not in INGESTIBLE_SOP_CLASSES:
        name = UID(sop_class).name
        described = sop_class if name == sop_class else f"{name} ({sop_class})"
        accepted = ", ".join(INGESTIBLE_SOP_CLASSES.values())
        raise IngestRefused(f"unsupported SOP class {described}; accepted: {accepted}")


def deidentify(ds: Dataset, *, uid_secret: bytes, profile: Profile | None = None) -> Dataset:
    """Apply the profile to ``ds`` in place (pixel data untouched) and return it.

    A File Meta Information, if present, is rebuilt from the de-identified
    dataset (keeping only the transfer syntax), and the preamble zeroed.
    """
    profile = profile or load_profile()
    _scrub(ds, profile=profile, uid_secret=uid_secret)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        ds.file_meta = _file_meta(ds, transfer_syntax=meta.get("TransferSyntaxUID"))
        # The original preamble may carry anything (TIFF headers, vendor text).
        ds.preamble = b"\x00" * 128
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = profile.method
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    return ds


def _file_meta(ds: Dataset, *, transfer_syntax: str | None) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(ds.get("SOPClassUID", "")))
    meta.MediaStorageSOPInstanceUID = UID(str(ds.get("SOPInstanceUID", "")))
    if transfer_syntax:
        meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _sop_class(ds: Dataset) -> str:
    value = ds.get("SOPClassUID")
    if not value:
        meta = getattr(ds, "file_meta", None)
        value = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return str(value or "").strip(" \x00")


def _check_pixel_data_length(ds: Dataset) -> None:
    """Refuse native pixel data shorter than its header says (a truncated upload)."""
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    length = raw.length if isinstance(raw, RawDataElement) else len(raw.value or b"")
    if length == UNDEFINED_LENGTH:
        return  # encapsulated (compressed) frames: sizes are not predictable
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 0)
    needed = (int(ds.Rows) * int(ds.Columns) * frames * samples * bits + 7) // 8
    if length < needed:
        raise IngestRefused(f"Pixel Data is truncated: {length} bytes, the header needs {needed}")


def _scrub(ds: Dataset, *, profile: Profile, uid_secret: bytes) -> None:
    for tag in sorted(ds.keys()):
        tag = BaseTag(tag)
        if int(tag) == PIXEL_DATA:
            continue
        # Decoding values is most of the cost: an element whose VR the file states
        # is kept undecoded (written back byte for byte), removed, or replaced
        # without decoding; only UIDs to remap and sequences are decoded.
        vr = _stated_vr(ds.get_item(tag, keep_deferred=True))
        if vr is not None:
            action = _action_for(tag, vr, profile)
            if action == "K":
                continue
            if action == "X":
                del ds[tag]
                continue
            if action == "Z":
                ds[tag] = DataElement(tag, vr, empty_value_for_VR(vr))
                continue
            if action == "D":
                ds[tag] = DataElement(tag, vr, _dummy_for(vr, profile))
                continue
        elem = ds[tag]
        action = _action(tag, elem, profile)
        if action == "X":
            del ds[tag]
        elif action == "Z":
            elem.value = [] if elem.VR == VR.SQ else elem.empty_value
        elif action == "D":
            elem.value = _dummy(elem, profile)
        elif action == "U":
            elem.value = _remap_values(elem.value, uid_secret=uid_secret, profile=profile)
        elif elem.VR == VR.SQ:
            for item in elem.value:
                _scrub(item, profile=profile, uid_secret=uid_secret)


def _action(tag: BaseTag, elem: DataElement, profile: Profile) -> str:
    return _action_for(tag, elem.VR, profile)


def _action_for(tag: BaseTag, vr: str | None, profile: Profile) -> str:
    if tag.is_private:
        return profile.private_action
    if tag.element == 0:
        return profile.group_length_action
    rule = profile.rule_for(tag)
    if rule is not None:
        return rule.action
    return profile.unlisted_ui_action if vr == VR.UI else profile.unlisted_action


def _stated_vr(elem: DataElement | RawDataElement | None) -> str | None:
    """The VR of a still-undecoded element when decoding cannot change it, else None.

    Implicit VR (looked up on decoding), UN (replaced by the dictionary's VR on
    decoding), SQ (its items are scrubbed) and invalid VRs (refused on decoding)
    must be decoded first.
    """
    if not isinstance(elem, RawDataElement) or elem.VR not in _UNDECODED_VRS:
        return None
    if elem.length == UNDEFINED_LENGTH:
        return None
    return elem.VR


def _dummy(elem: DataElement, profile: Profile) -> Any:
    return _dummy_for(elem.VR, profile)


def _dummy_for(vr: str, profile: Profile) -> Any:
    if vr in _BINARY_NUMBER_VRS:
        return 0
    if vr in profile.dummy:
        return profile.dummy[vr]
    return empty_value_for_VR(vr)


def _remap_values(value: Any, *, uid_secret: bytes, profile: Profile) -> Any:
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        return [remap_uid(str(v), uid_secret=uid_secret, profile=profile) for v in value]
    return remap_uid(str(value), uid_secret=uid_secret, profile=profile)
