"""DP-FedAvg: noise any participant reproduces from the round's seed, and the budget from
opacus' RDP accountant."""

from __future__ import annotations

import numpy as np
import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from opacus.accountants import RDPAccountant

from tests.training.federated.federated_helpers import random_flats, small_base, write_updates
from training.federated.aggregate import dp_fedavg
from training.federated.privacy import epsilon, noise_digest, noise_generator
from training.federated.updates import Layout

BLOCKHASH = bytes.fromhex("5f" * 16 + "a3" * 16)


def test_the_seed_is_solidity_keccak_of_the_abi_encoded_round_and_block_hash() -> None:
    expected = keccak(encode(["uint256", "bytes32"], [42, BLOCKHASH]))
    assert noise_digest(42, BLOCKHASH) == expected
    assert noise_digest(42, BLOCKHASH) != noise_digest(43, BLOCKHASH)


def test_the_seed_is_keccak_not_sha3() -> None:
    import hashlib

    preimage = (42).to_bytes(32, "big") + BLOCKHASH
    assert noise_digest(42, BLOCKHASH) != hashlib.sha3_256(preimage).digest()


@pytest.mark.parametrize(("round_id", "seed"), [(-1, BLOCKHASH), (1 << 256, BLOCKHASH), (1, b"x")])
def test_it_refuses_a_round_id_or_seed_the_contract_cannot_hold(round_id, seed) -> None:
    with pytest.raises(ValueError):
        noise_digest(round_id, seed)


def test_the_generator_replays_the_same_draws() -> None:
    a = noise_generator(9, BLOCKHASH).standard_normal(1000)
    b = noise_generator(9, BLOCKHASH).standard_normal(1000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, noise_generator(10, BLOCKHASH).standard_normal(1000))


def test_dp_noise_is_reproducible_from_its_seed_and_changes_with_it(tmp_path) -> None:
    layout = Layout.of(small_base())
    updates = write_updates(tmp_path, layout, random_flats(layout, 4, seed=2))

    def run(round_id: int, seed: bytes) -> str:
        settings = {"clip_norm": 10.0, "noise_multiplier": 1.0}
        return dp_fedavg(updates, round_id=round_id, noise_seed=seed, **settings).hash

    assert run(3, BLOCKHASH) == run(3, BLOCKHASH)
    assert run(3, BLOCKHASH) != run(3, bytes(32))
    assert run(3, BLOCKHASH) != run(4, BLOCKHASH)


def test_epsilon_is_opacus_rdp_accountants() -> None:
    accountant = RDPAccountant()
    for _ in range(30):
        accountant.step(noise_multiplier=1.3, sample_rate=0.5)
    direct = accountant.get_epsilon(delta=1e-5)
    assert epsilon(noise_multiplier=1.3, rounds=30, delta=1e-5, sample_rate=0.5) == direct


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    spent = [epsilon(noise_multiplier=1.0, rounds=r, delta=1e-5) for r in (1, 5, 20, 100)]
    assert spent == sorted(spent) and len(set(spent)) == 4
    assert epsilon(noise_multiplier=3.0, rounds=20, delta=1e-5) < spent[2]
    assert epsilon(noise_multiplier=1.0, rounds=0, delta=1e-5) == 0.0
    assert epsilon(noise_multiplier=0.0, rounds=1, delta=1e-5) == float("inf")
