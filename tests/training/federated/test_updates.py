"""Updates: the canonical file, its hash, the loader's refusals with their reason codes,
FedBN's local layers, integer buffers, and applying an aggregate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

from tests.training.federated.federated_helpers import SmallNet, small_base
from training.federated.updates import (
    FIXED_METADATA,
    Layout,
    UpdateRejected,
    apply_delta,
    load_update,
    make_update,
    normalisation_keys,
    state_hash,
    update_bytes,
    write_update,
)


def _local(base: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in base.items():
        if v.is_floating_point():
            out[k] = v + 0.01 * torch.randn(v.shape, generator=g)
        else:
            out[k] = v + 7  # a node's counter moved on
    return out


@pytest.fixture
def base() -> dict[str, torch.Tensor]:
    return small_base()


@pytest.fixture
def layout(base: dict[str, torch.Tensor]) -> Layout:
    return Layout.of(base)


def test_it_writes_exactly_what_safetensors_writes(base, layout, tmp_path: Path) -> None:
    delta = make_update(base, _local(base), layout)
    data = update_bytes(delta, layout)
    assert data == save(dict(reversed(delta.items())), metadata=FIXED_METADATA)
    path = tmp_path / "u.safetensors"
    assert write_update(delta, layout, path) == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data
    back = load_file(path)
    assert list(back) == sorted(back)
    for key, value in delta.items():
        assert back[key].dtype == torch.float32
        assert torch.equal(back[key], value)


def test_it_hashes_the_same_update_the_same_way_every_time(base, layout, tmp_path) -> None:
    hashes = set()
    for i in range(2):
        delta = make_update(base, _local(base), layout)
        hashes.add(write_update(delta, layout, tmp_path / f"{i}.safetensors"))
        hashes.add(load_update(tmp_path / f"{i}.safetensors", layout).hash)
    assert len(hashes) == 1


def test_it_carries_floating_entries_and_never_integer_buffers(base, layout) -> None:
    assert "bn.running_mean" in layout.keys and "bn.running_var" in layout.keys
    assert "bn.num_batches_tracked" in base
    assert "bn.num_batches_tracked" not in layout.keys
    assert layout.numel == sum(v.numel() for k, v in base.items() if v.is_floating_point())


def test_it_keeps_normalisation_layers_local_under_fedbn(base) -> None:
    local = normalisation_keys(SmallNet())
    assert local == {
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    }
    layout = Layout.of(base, local=local)
    assert layout.keys == ["conv.bias", "conv.weight", "head.bias", "head.weight"]


def _write_raw(path: Path, tensors: dict[str, torch.Tensor], metadata=FIXED_METADATA) -> Path:
    path.write_bytes(save(tensors, metadata=metadata))
    return path


def _good(base, layout) -> dict[str, torch.Tensor]:
    return make_update(base, _local(base), layout)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda d: d.pop("head.bias"), "keys"),
        (lambda d: d.update({"extra": torch.zeros(2)}), "keys"),
        (lambda d: d.update({"head.bias": d["head.bias"].double()}), "dtype"),
        (lambda d: d.update({"head.bias": d["head.bias"].half()}), "dtype"),
        (lambda d: d.update({"head.bias": torch.zeros(71)}), "shape"),
        (lambda d: d.update({"conv.weight": d["conv.weight"].reshape(8, 27)}), "shape"),
        (lambda d: d["head.weight"].view(-1).__setitem__(5, float("nan")), "nan"),
        (lambda d: d["conv.bias"].__setitem__(0, float("inf")), "inf"),
        (lambda d: d["conv.bias"].__setitem__(0, float("-inf")), "inf"),
    ],
    ids=["missing", "extra", "float64", "float16", "shape", "reshaped", "nan", "inf", "-inf"],
)
def test_it_refuses_a_bad_update_with_its_reason(base, layout, tmp_path, spoil, reason) -> None:
    delta = _good(base, layout)
    spoil(delta)
    path = _write_raw(tmp_path / "bad.safetensors", delta)
    with pytest.raises(UpdateRejected) as caught:
        load_update(path, layout)
    assert caught.value.reason == reason


def test_it_names_nan_even_when_an_infinity_comes_first(base, layout, tmp_path) -> None:
    delta = _good(base, layout)
    delta["bn.bias"][0] = float("inf")  # bn.* sorts before head.*
    delta["head.weight"][0, 0] = float("nan")
    with pytest.raises(UpdateRejected) as caught:
        load_update(_write_raw(tmp_path / "u.safetensors", delta), layout)
    assert caught.value.reason == "nan"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-4],  # truncated
        lambda b: b + b"\0\0\0\0",  # trailing bytes
        lambda b: b"\xff" * 8 + b[8:],  # absurd header length
        lambda b: b[:3],
        lambda b: b[:8] + b"[" + b[9:],  # not JSON
    ],
    ids=["truncated", "trailing", "header-length", "tiny", "not-json"],
)
def test_it_refuses_a_file_that_is_not_an_update(base, layout, tmp_path, mangle) -> None:
    path = tmp_path / "u.safetensors"
    path.write_bytes(mangle(update_bytes(_good(base, layout), layout)))
    with pytest.raises(UpdateRejected) as caught:
        load_update(path, layout)
    assert caught.value.reason == "format"


def test_it_refuses_other_metadata_or_a_non_canonical_header(base, layout, tmp_path) -> None:
    delta = _good(base, layout)
    path = _write_raw(tmp_path / "meta.safetensors", delta, metadata={"format": "pt"})
    with pytest.raises(UpdateRejected, match="metadata") as caught:
        load_update(path, layout)
    assert caught.value.reason == "format"
    # Same tensors, header re-encoded with spaces: valid safetensors, another hash.
    data = update_bytes(delta, layout)
    n = int.from_bytes(data[:8], "little")
    text = json.dumps(json.loads(data[8 : 8 + n]), separators=(", ", ": ")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n :])
    assert load_file(path).keys() == delta.keys()
    with pytest.raises(UpdateRejected, match="canonical") as caught:
        load_update(path, layout)
    assert caught.value.reason == "format"


def test_it_refuses_to_make_an_update_from_a_broken_local_model(base, layout) -> None:
    local = _local(base)
    local["head.weight"][0, 0] = float("nan")
    with pytest.raises(UpdateRejected) as caught:
        make_update(base, local, layout)
    assert caught.value.reason == "nan"
    local = _local(base)
    del local["conv.bias"]
    with pytest.raises(UpdateRejected) as caught:
        make_update(base, local, layout)
    assert caught.value.reason == "keys"


def test_it_refuses_a_zero_or_negative_sample_count(base, layout, tmp_path) -> None:
    path = tmp_path / "u.safetensors"
    write_update(_good(base, layout), layout, path)
    with pytest.raises(ValueError, match="positive"):
        load_update(path, layout, samples=0)


def test_it_applies_a_delta_and_keeps_integer_buffers_from_the_base(base, layout) -> None:
    local = _local(base)
    delta = make_update(base, local, layout)
    after = apply_delta(base, delta, layout)
    assert torch.equal(after["bn.num_batches_tracked"], base["bn.num_batches_tracked"])
    for key in layout.keys:
        assert torch.equal(after[key], base[key] + delta[key])
        torch.testing.assert_close(after[key], local[key])
    model = SmallNet()
    model.load_state_dict(after)  # a complete state dict, every key present


def test_it_keeps_a_fedbn_nodes_own_normalisation_layers(base) -> None:
    local_keys = normalisation_keys(SmallNet())
    layout = Layout.of(base, local=local_keys)
    node = _local(base, seed=3)
    delta = make_update(base, _local(base, seed=4), layout)
    after = apply_delta(base, delta, layout, local=node)
    for key in local_keys:
        assert torch.equal(after[key], node[key])
    assert torch.equal(after["head.weight"], base["head.weight"] + delta["head.weight"])


def test_it_hashes_a_whole_model_with_its_integer_buffers(base) -> None:
    changed = dict(base)
    changed["bn.num_batches_tracked"] = base["bn.num_batches_tracked"] + 1
    assert state_hash(base) == state_hash(dict(reversed(base.items())))
    assert state_hash(base) != state_hash(changed)


def test_it_refuses_a_base_model_with_non_float32_weights() -> None:
    with pytest.raises(ValueError, match="float32"):
        Layout.of({"w": torch.zeros(3, dtype=torch.float64)})
    assert Layout.of({"w": torch.zeros(3), "n": torch.zeros((), dtype=torch.int64)}).numel == 3
