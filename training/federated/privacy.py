"""Differential privacy for DP-FedAvg: the noise generator every participant recomputes, and
the privacy budget spent, from opacus' RDP accountant.

Seed derivation (DESIGN.md, "Bit-exact aggregation"): the contract records
``noise_seed = blockhash(block.number - 1)`` in the transaction that closes training. Then

    digest = keccak256(uint256(round_id) as 32 big-endian bytes || noise_seed (32 bytes))

which is Solidity's ``keccak256(abi.encode(roundId, noiseSeed))`` for a ``uint256`` round id
and a ``bytes32`` seed, and the generator is ``numpy.random.Generator(PCG64(int(digest)))``
with the digest read as a big-endian integer (numpy passes it through ``SeedSequence``).
Noise is drawn with ``standard_normal`` in float64, one value per element of the flat update
vector in layout order, and scaled by sigma; draws do not depend on how the vector is cut
into chunks. keccak256 is Ethereum's pre-standard Keccak, not ``hashlib.sha3_256``.
"""

from __future__ import annotations

import numpy as np
from Crypto.Hash import keccak


def noise_digest(round_id: int, noise_seed: bytes) -> bytes:
    """keccak256(abi.encode(uint256 round_id, bytes32 noise_seed))."""
    if not 0 <= round_id < 1 << 256:
        raise ValueError(f"round id {round_id} is not a uint256")
    if len(noise_seed) != 32:
        raise ValueError(f"the noise seed is a 32-byte block hash, not {len(noise_seed)} bytes")
    return keccak.new(digest_bits=256, data=round_id.to_bytes(32, "big") + noise_seed).digest()


def noise_generator(round_id: int, noise_seed: bytes) -> np.random.Generator:
    """The round's noise generator; every participant derives the same one."""
    seed = int.from_bytes(noise_digest(round_id, noise_seed), "big")
    return np.random.Generator(np.random.PCG64(seed))


def noise_std(*, noise_multiplier: float, clip_norm: float, updates: int) -> float:
    """sigma = z * C / m: the noise on the mean of m updates each clipped to norm C."""
    return noise_multiplier * clip_norm / updates


def epsilon(
    *, noise_multiplier: float, rounds: int, delta: float, sample_rate: float = 1.0
) -> float:
    """The (epsilon, delta) budget spent after ``rounds`` DP-FedAvg rounds, per participant.

    Each round is one Gaussian mechanism on the clipped mean, with ``sample_rate`` the
    fraction of the consortium's members taking part (1.0: everyone, every round). The
    accounting is opacus' ``RDPAccountant``; with no noise the budget is infinite.
    """
    from opacus.accountants import RDPAccountant

    if rounds < 0 or not 0 < delta < 1 or not 0 < sample_rate <= 1:
        raise ValueError("rounds >= 0, 0 < delta < 1 and 0 < sample_rate <= 1 are required")
    if rounds == 0:
        return 0.0
    if noise_multiplier <= 0:
        return float("inf")
    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return float(accountant.get_epsilon(delta=delta))
