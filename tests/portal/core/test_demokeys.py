from __future__ import annotations

from eth_account import Account

from chain.keystore import read_keystore
from portal.core import demokeys

KEY = "0x" + "42" * 32
ADDRESS = Account.from_key(KEY).address


def test_a_saved_key_loads_back_from_its_one_path(settings, tmp_path):
    settings.DEMO_KEYSTORES = True
    settings.DEMO_KEYSTORE_DIR = tmp_path / "keystores"
    written = demokeys.save(ADDRESS, KEY)
    assert written == tmp_path / "keystores" / f"{ADDRESS.lower()}.json"
    assert demokeys.path(ADDRESS.upper().replace("0X", "0x")) == written
    assert demokeys.load(ADDRESS) == KEY
    # What the steward's upload CLI is handed: a standard keystore under the one password.
    assert read_keystore(written, demokeys.PASSWORD) == KEY


def test_it_has_no_key_where_demo_keystores_are_off_or_none_was_saved(settings, tmp_path):
    settings.DEMO_KEYSTORES = True
    settings.DEMO_KEYSTORE_DIR = tmp_path / "keystores"
    assert demokeys.load(ADDRESS) is None
    demokeys.save(ADDRESS, KEY)
    settings.DEMO_KEYSTORES = False
    assert not demokeys.exists(ADDRESS)
    assert demokeys.load(ADDRESS) is None
