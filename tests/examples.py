"""How many examples a property test draws: its own count in `make test`, ten times as
many in `make test-deep` (HYPOTHESIS_PROFILE=deep, which tests/conftest.py loads)."""

from __future__ import annotations

import os

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def examples(count: int) -> int:
    return count * 10 if DEEP else count
