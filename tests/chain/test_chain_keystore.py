from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from chain.keystore import new_account, read_keystore, write_keystore


def test_it_round_trips_a_key(tmp_path: Path) -> None:
    account = new_account()
    path = tmp_path / "keys" / "node.json"
    address = write_keystore(path, account.key, "s3cret", kdf="pbkdf2", iterations=1000)
    assert address == account.address
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 3 and data["crypto"]["kdf"] == "pbkdf2"
    assert account.key.hex() not in path.read_text()
    key = read_keystore(path, "s3cret")
    assert Account.from_key(key).address == account.address
    with pytest.raises(ValueError):
        read_keystore(path, "wrong")


def test_it_uses_scrypt_by_default(tmp_path: Path) -> None:
    account = new_account()
    write_keystore(tmp_path / "k.json", account.key.hex(), "pw")
    assert json.loads((tmp_path / "k.json").read_text())["crypto"]["kdf"] == "scrypt"
    assert read_keystore(tmp_path / "k.json", "pw") == "0x" + account.key.hex().removeprefix("0x")
    assert new_account().address != account.address
