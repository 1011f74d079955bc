"""Chain facts as a person reads them: a hash shortened with its full value at hand, and a
proposal's tally said in words with the quorum the contract applies (docs/pages.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django import template
from django.utils.html import format_html, format_html_join

from portal.consortium.models import Proposal
from portal.core import chain as portal_chain

register = template.Library()
logger = logging.getLogger(__name__)

# ConsortiumRegistry's quorum is immutable: read once per deployment, then kept.
_quorum_of: dict[tuple[int, str], int] = {}


def short(value: str) -> str:
    """0x1234ab…cdef: enough to tell two values apart at a glance, short enough for a phone."""
    head = 8 if value.startswith("0x") else 6
    if len(value) <= head + 7:
        return value
    return f"{value[:head]}…{value[-4:]}"


@register.simple_tag(name="hash")
def hash_tag(value: object, label: str = "value", of: object = "") -> str:
    """A hash, address or id, shortened; the full value on hover and behind a copy button
    (static/js/copy.js shows the button: without script it would do nothing)."""
    if value in (None, ""):
        return "—"
    full = str(value)
    return format_html(
        '<span class="hash"><code title="{}">{}</code>'
        '<button type="button" class="copy" data-copy="{}" aria-label="Copy {}{}" hidden>'
        "Copy</button></span>",
        full,
        short(full),
        full,
        label,
        f" of {of}" if of else "",
    )


def quorum_bps() -> int | None:
    """The registry's quorum in basis points, or None when the chain cannot be read now:
    a page then says the tally without the threshold rather than failing."""
    try:
        deployment = portal_chain.deployment()
        key = (deployment.chain_id, deployment.address)
        if key not in _quorum_of:
            _quorum_of[key] = portal_chain.registry().quorum_bps()
        return _quorum_of[key]
    except Exception as exc:  # the node is down or not deployed: the page still renders
        logger.warning("cannot read the registry's quorum: %s", exc)
        return None


@dataclass(frozen=True)
class Tally:
    """What a proposal needs, in the contract's terms: it passes when
    yes * 10000 > quorum_bps * eligible, and is rejected once that is out of reach."""

    yes: int
    no: int
    eligible: int
    quorum_bps: int

    @property
    def needed(self) -> int:
        return self.quorum_bps * self.eligible // 10000 + 1

    @property
    def yes_to_pass(self) -> int:
        return max(self.needed - self.yes, 0)

    @property
    def no_to_reject(self) -> int:
        return max(self.eligible - self.needed + 1 - self.no, 0)

    @property
    def share(self) -> str:
        if self.quorum_bps == 5000:
            return "more than half"
        return f"more than {self.quorum_bps / 100:g}%"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def tally_sentences(proposal: Proposal, bps: int | None) -> list[str]:
    """What is needed, then where the count stands, in words."""
    hospitals = _plural(proposal.eligible, "hospital", "hospitals")
    if bps is None:
        return [f"{proposal.yes} yes and {proposal.no} no of the {hospitals} at opening."]
    t = Tally(proposal.yes, proposal.no, proposal.eligible, bps)
    needed = f"{t.needed} of {t.eligible} needed: {t.share} of the {hospitals} at opening."
    if proposal.status == Proposal.Status.ACCEPTED:
        return [needed, f"Accepted with {t.yes} yes and {t.no} no."]
    if proposal.status == Proposal.Status.REJECTED:
        if t.no_to_reject == 0:
            return [needed, f"Rejected: {t.no} no put {t.needed} yes out of reach."]
        return [needed, f"Rejected at the deadline with {t.yes} yes."]
    if not proposal.is_open:
        return [needed, f"{t.yes} yes when the deadline passed: closing it records a rejection."]
    return [
        needed,
        f"So far {t.yes} yes and {t.no} no: "
        f"{_plural(t.yes_to_pass, 'more yes passes it', 'more yes votes pass it')}; "
        f"{_plural(t.no_to_reject, 'more no rejects it', 'more no votes reject it')}.",
    ]


@register.filter
def tally_needed(proposal: Proposal) -> str:
    """'2 of 3 needed', or '' when the quorum cannot be read: for a column in a list."""
    bps = quorum_bps()
    if bps is None:
        return ""
    needed = Tally(proposal.yes, proposal.no, proposal.eligible, bps).needed
    return f"{needed} of {proposal.eligible} needed"


@register.simple_tag
def tally(proposal: Proposal) -> str:
    """The tally in words, one paragraph per sentence."""
    sentences = tally_sentences(proposal, quorum_bps())
    return format_html_join(
        "", '<p class="tally-text" data-testid="tally-text">{}</p>', ((s,) for s in sentences)
    )
