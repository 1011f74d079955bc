"""A data steward on a phone: the catalogue, a dataset's page and the upload form fit a
390 px screen. Wide tables scroll inside their own box; the upload's progress bars stay
on screen. The phone is Chromium's mobile emulation (meta viewport honoured, touch)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_dataset import _sign_in_steward
from tests.e2e.test_browser_dataset_owner import _owner_page_setup

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}


def page_width(page: Any) -> int:
    """The page's layout width in CSS pixels (wider than the screen: it scrolls sideways)."""
    return int(page.evaluate("document.documentElement.scrollWidth"))


# The outermost elements that reach past the screen's right edge, named for a failure
# message; what a scrolling box clips does not count (an absolute element escapes it).
_OVERFLOWING_JS = """width => {
  const clipped = el => {
    if (getComputedStyle(el).position === "absolute") return false;
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const past = el => el.getBoundingClientRect().right > width + 0.5;
  return [...document.body.querySelectorAll("*")]
    .filter(el => past(el) && !clipped(el))
    .filter(el => el.parentElement === document.body || !past(el.parentElement))
    .slice(0, 5)
    .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`
      + ` (right ${Math.round(el.getBoundingClientRect().right)}): `
      + el.textContent.trim().slice(0, 60));
}"""


def overflowing(page: Any, width: int) -> list[str]:
    return list(page.evaluate(_OVERFLOWING_JS, width))


def assert_fits(page: Any, width: int) -> None:
    assert page_width(page) <= width, (page.url, page_width(page), overflowing(page, width))


def scrolls_inside(locator: Any) -> bool:
    return bool(locator.evaluate("box => box.scrollWidth > box.clientWidth"))


def test_a_steward_on_a_phone_reads_the_catalogue_and_a_dataset_without_sideways_scrolling(
    consortium, datasets_chain, browser_chromium, live_server, tmp_path
):
    dataset, own, _ = _owner_page_setup(consortium, tmp_path)
    context = browser_chromium.new_context(base_url=live_server.url, **PHONE)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None,
    )

    _sign_in_steward(page, "/datasets/")
    catalogue = page.get_by_test_id("dataset-catalogue")
    expect(catalogue).to_contain_text("Phantom owner CT")
    assert_fits(page, 390)
    # The table is wider than the phone: it scrolls in its box, the page does not.
    box = page.locator(".table-scroll").filter(has=catalogue)
    assert scrolls_inside(box)
    box.evaluate("box => { box.scrollLeft = box.scrollWidth; }")
    expect(
        catalogue.get_by_role("button", name="Copy manifest hash of Phantom owner CT")
    ).to_be_visible()
    page.screenshot(path=str(tmp_path / "phone-catalogue.png"), full_page=True)

    page.get_by_role("link", name="Phantom owner CT").click()
    expect(page.get_by_role("heading", name="Phantom owner CT")).to_be_visible()
    expect(page.get_by_test_id("dataset-grants")).to_contain_text(own.label)
    assert_fits(page, 390)
    for fact in ("Manifest hash", "Anchor transaction", "Dataset id on chain"):
        value = page.locator("dl.facts dt", has_text=fact).locator("xpath=following-sibling::dd[1]")
        box = value.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390, (fact, box)

    page.get_by_role("link", name="Upload dataset").click()
    expect(page.get_by_role("heading", name="Upload a dataset")).to_be_visible()
    assert_fits(page, 390)
    for name in ("deid", "encrypt", "upload"):
        bar = page.locator(f"#{name}-progress")
        expect(bar).to_be_visible()
        box = bar.bounding_box()
        assert box is not None and box["width"] >= 200 and box["x"] + box["width"] <= 390, (
            name,
            box,
        )
    assert errors == [], errors
    context.close()
