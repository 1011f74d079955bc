"""Fixtures for the end-to-end tests.

This file is shared: each section belongs to one part of the suite. Keep names
prefixed by the section so they cannot collide.
"""

from __future__ import annotations

# =========================================================================================
# Browser tests (tests/e2e/test_browser_*.py): Debian's chromium driven by Playwright
# against pytest-django's live_server, with an injected EIP-1193 test wallet.
# Everything here is named browser_*.
# =========================================================================================
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BROWSER_CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags chromium keeps trying to reach Google (closed network here).
BROWSER_CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
BROWSER_SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

# An EIP-1193 provider whose accounts and signatures come from Python (eth-account),
# the way a wallet extension injects `window.ethereum` before the page's scripts run.
_BROWSER_WALLET_JS = """
(() => {
  window.ethereum = {
    isMedChainTestWallet: true,
    async request({ method, params }) {
      if (method === "eth_requestAccounts" || method === "eth_accounts") {
        return await window.__browserWalletAccounts();
      }
      if (method === "eth_signTypedData_v4") {
        return await window.__browserWalletSignTypedData(params[0], params[1]);
      }
      if ((method === "eth_chainId" || method === "eth_call") && window.__browserWalletRead) {
        return await window.__browserWalletRead(method, JSON.stringify(params ?? []));
      }
      const err = new Error(`test wallet: unsupported method ${method}`);
      err.code = 4200;
      throw err;
    },
  };
})();
"""


def browser_require_chromium() -> None:
    """Fail (never skip) when the browser is missing: `make test` installs it."""
    if not BROWSER_CHROMIUM.exists():
        pytest.fail(
            f"{BROWSER_CHROMIUM} is missing: `make test` installs Debian's chromium "
            "(apt-get update && apt-get install -y chromium); run it, or install chromium "
            "by hand, before the browser tests.",
            pytrace=False,
        )


@pytest.fixture
def browser_chromium() -> Iterator[Any]:
    """A headless Debian chromium, one per test."""
    browser_require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an asyncio loop in this thread; Django then refuses ORM
    # calls from the test body ("async context") although they are plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(BROWSER_CHROMIUM), args=BROWSER_CHROMIUM_ARGS, headless=True
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class BrowserPersona:
    """One person in one browser profile, holding one wallet key."""

    name: str
    address: str
    page: Any
    signed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def screenshot(self, filename: str) -> Path:
        BROWSER_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = BROWSER_SCREENSHOTS / filename
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def browser_persona(browser_chromium, live_server) -> Callable[[str, str], BrowserPersona]:
    """Make a persona: a fresh browser context whose test wallet holds `private_key` (and,
    unless `reads_chain` is false, answers eth_chainId and eth_call from the test chain)."""
    from eth_account import Account

    def make(name: str, private_key: str, *, reads_chain: bool = True) -> BrowserPersona:
        account = Account.from_key(private_key)
        context = browser_chromium.new_context(
            base_url=live_server.url, viewport={"width": 1200, "height": 900}
        )
        context.set_default_timeout(20_000)
        page = context.new_page()
        persona = BrowserPersona(name=name, address=account.address, page=page)
        page.on("pageerror", lambda exc: persona.errors.append(str(exc)))
        # Chromium reports each Content-Security-Policy violation on the console.
        page.on(
            "console",
            lambda message: persona.errors.append(message.text)
            if "Content Security Policy" in message.text
            else None,
        )

        def accounts() -> list[str]:
            return [account.address]

        def sign_typed_data(address: str, typed_json: str) -> str:
            if address.lower() != account.address.lower():
                raise ValueError(f"{name}'s wallet holds {account.address}, not {address}")
            typed = json.loads(typed_json)  # what a wallet receives: JSON text
            persona.signed.append(typed)
            signed = Account.sign_typed_data(private_key, full_message=typed)
            return "0x" + bytes(signed.signature).hex()

        def read_chain(method: str, params_json: str) -> str:
            """The wallet's provider reads the portal's test chain (what a wallet's node serves)."""
            from portal.core import chain as portal_chain

            w3 = portal_chain.client().w3
            if method == "eth_chainId":
                return hex(w3.eth.chain_id)
            call, _block = json.loads(params_json)
            return "0x" + bytes(w3.eth.call({"to": call["to"], "data": call["data"]})).hex()

        if reads_chain:
            context.expose_function("__browserWalletRead", read_chain)
        context.expose_function("__browserWalletAccounts", accounts)
        context.expose_function("__browserWalletSignTypedData", sign_typed_data)
        context.add_init_script(_BROWSER_WALLET_JS)
        return persona

    return make


def _browser_totp_code(device: Any) -> str:
    from django_otp.oath import TOTP

    device.refresh_from_db()
    for ahead in (0, 1):  # the device accepts one step ahead (tolerance 1)
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + ahead)
        totp.time = time.time()
        if totp.t() > device.last_t:
            return f"{totp.token():0{device.digits}d}"
    time.sleep(device.step)
    return _browser_totp_code(device)


@pytest.fixture
def browser_totp() -> Callable[[Any], str]:
    """The code an authenticator app shows now for a TOTPDevice, never one already used."""
    return _browser_totp_code


@pytest.fixture
def browser_founder_admin(consortium) -> Callable[[int, str], tuple[Any, Any]]:
    """Make the admin (user, confirmed TOTP device) of founding hospital `index`.

    Password: f"{username}-pass-2024".
    """
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from portal.consortium import services
    from portal.consortium.models import Member, Staff

    def make(index: int, username: str) -> tuple[Any, Any]:
        member = Member.objects.get(governance_address=consortium[index].address)
        staff = services.staff_create(
            member=member,
            username=username,
            password=f"{username}-pass-2024",
            email=f"{username}@hospital.example",
            role=Staff.Role.ADMIN,
        )
        device = TOTPDevice.objects.create(user=staff.user, name="phone", confirmed=True)
        return staff.user, device

    return make


# ============================= end of the browser section ================================
