from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from training.ingest.annotations import (
    FORMAT,
    AnnotationError,
    Annotations,
    Box,
    parse_annotations,
    remap_uids,
)

UID_A = "1.2.3.4.1"
UID_B = "1.2.3.4.2"
IMAGES = {UID_A: (256, 256), UID_B: (128, 64)}


def _doc(instances: dict) -> bytes:
    return json.dumps({"format": FORMAT, "instances": instances}).encode()


def _box(x0=10, y0=20, x1=30, y1=40, label="lesion") -> dict:
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "label": label}


def test_it_parses_a_valid_file_and_round_trips():
    raw = _doc({UID_A: {"boxes": [_box(), _box(0, 0, 256, 256)]}, UID_B: {"boxes": []}})
    parsed = parse_annotations(raw, IMAGES)
    assert parsed.boxes(UID_A) == (Box(10, 20, 30, 40), Box(0, 0, 256, 256))
    assert parsed.boxes(UID_B) == ()
    assert parse_annotations(parsed.to_json(), IMAGES) == parsed


@pytest.mark.parametrize(
    ("box", "uid", "fragment"),
    [
        (_box(x1=257), UID_A, "outside the 256x256 image"),
        (_box(x0=-1), UID_A, "outside"),
        (_box(y1=129), UID_B, "outside the 64x128 image"),
        (_box(x1=65), UID_B, "outside"),
        (_box(x0=30, x1=30), UID_A, "is empty"),
        (_box(y0=40, y1=20), UID_A, "is empty"),
        (_box(x0=1.5), UID_A, "x0=1.5 is not an integer"),
        (_box(y1=40.0), UID_A, "y1=40.0 is not an integer"),
        (_box(x1=True), UID_A, "x1=True is not an integer"),
        (_box(y0="3"), UID_A, "y0='3' is not an integer"),
        (_box(label=""), UID_A, "label"),
        (_box(label=7), UID_A, "label"),
        ({"x0": 1, "y0": 1, "x1": 2}, UID_A, "missing"),
        ({**_box(), "score": 0.9}, UID_A, "unknown ['score']"),
        ([1, 2, 3, 4], UID_A, "must be an object"),
    ],
)
def test_it_refuses_a_bad_box_naming_instance_and_box(box, uid, fragment):
    raw = _doc({uid: {"boxes": [_box(), box]}})
    with pytest.raises(AnnotationError) as err:
        parse_annotations(raw, IMAGES)
    assert f"instance {uid!r}, box 1" in str(err.value)
    assert fragment in str(err.value)


def test_it_refuses_an_unknown_instance():
    with pytest.raises(AnnotationError, match=r"instance '9\.9': not an image of this dataset"):
        parse_annotations(_doc({"9.9": {"boxes": []}}), IMAGES)


def test_it_refuses_a_duplicate_instance_uid():
    raw = (
        f'{{"format": "{FORMAT}", "instances": {{"{UID_A}": {{"boxes": []}}, '
        f'"{UID_A}": {{"boxes": []}}}}}}'
    ).encode()
    with pytest.raises(AnnotationError, match=rf"key '{UID_A}' appears more than once"):
        parse_annotations(raw, IMAGES)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"format": "x", "instances": {}}', "'format' must be"),
        (json.dumps({"format": FORMAT}).encode(), "'instances' must be an object"),
        (json.dumps({"format": FORMAT, "instances": {}, "extra": 1}).encode(), "unknown top-level"),
        (_doc({UID_A: []}), 'must be an object {"boxes"'),
        (_doc({UID_A: {"boxes": {}}}), "'boxes' must be a list"),
        (_doc({UID_A: {"boxes": [], "note": "x"}}), "must be an object"),
        (_doc({UID_A: {"boxes": [{"x0": float("nan")}]}}), "NaN is not valid JSON"),
    ],
)
def test_it_refuses_malformed_files_with_a_clear_message(raw, fragment):
    with pytest.raises(AnnotationError) as err:
        parse_annotations(raw, IMAGES)
    assert fragment in str(err.value)


def test_it_remaps_uids_and_refuses_a_missing_mapping():
    annotations = Annotations(instances={UID_A: (Box(1, 2, 3, 4),), UID_B: ()})
    remapped = remap_uids(annotations, {UID_A: "2.25.1", UID_B: "2.25.2"})
    assert remapped.instances == {"2.25.1": (Box(1, 2, 3, 4),), "2.25.2": ()}
    with pytest.raises(AnnotationError, match="no de-identified UID"):
        remap_uids(annotations, {UID_A: "2.25.1"})
    with pytest.raises(AnnotationError, match="already used"):
        remap_uids(annotations, {UID_A: "2.25.1", UID_B: "2.25.1"})


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=200))
def test_it_raises_only_annotation_error_on_random_bytes(raw):
    with pytest.raises(AnnotationError):
        parse_annotations(raw, IMAGES)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)
_box_like = st.fixed_dictionaries(
    {},
    optional={
        "x0": _json_values | st.integers(-5, 300),
        "y0": _json_values | st.integers(-5, 300),
        "x1": _json_values | st.integers(-5, 300),
        "y1": _json_values | st.integers(-5, 300),
        "label": _json_values | st.just("lesion"),
    },
)


@settings(max_examples=examples(300), deadline=None)
@given(
    uid=st.sampled_from([UID_A, UID_B, "1.9"]),
    boxes=st.lists(_box_like | _json_values, max_size=3),
    top=_json_values,
)
def test_it_raises_only_annotation_error_on_random_json(uid, boxes, top):
    for raw in (_doc({uid: {"boxes": boxes}}), json.dumps(top).encode()):
        try:
            parsed = parse_annotations(raw, IMAGES)
        except AnnotationError:
            continue
        rows, cols = IMAGES[uid]
        for box in parsed.boxes(uid):
            assert 0 <= box.x0 < box.x1 <= cols and 0 <= box.y0 < box.y1 <= rows
