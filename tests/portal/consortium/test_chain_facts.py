"""The chain-facts template tags: a hash shortened with its full value kept, and a tally
whose numbers follow the registry's own rule (checked here against the deployed contract)."""

from __future__ import annotations

import itertools

import pytest
from django.template import Context, Template

from portal.consortium.templatetags.chain_facts import Tally, quorum_bps, short, tally_sentences

TX = "0x" + "ab" * 31 + "cdef"


def test_a_hash_is_shortened_and_keeps_its_full_value_for_hover_and_copy():
    html = Template('{% load chain_facts %}{% hash tx "transaction" of="City" %}').render(
        Context({"tx": TX})
    )
    assert f'<code title="{TX}">{TX[:8]}…{TX[-4:]}</code>' in html
    assert f'data-copy="{TX}"' in html and 'aria-label="Copy transaction of City"' in html
    assert short("0x1234") == "0x1234" and short("") == ""
    assert Template("{% load chain_facts %}{% hash missing %}").render(Context()) == "—"


def test_an_attribute_value_cannot_break_out_of_the_markup():
    html = Template("{% load chain_facts %}{% hash v %}").render(Context({"v": '"><script>'}))
    assert "<script>" not in html


def _passes(yes: int, eligible: int, bps: int) -> bool:
    """ConsortiumRegistry._passes, word for word."""
    return yes * 10000 > bps * eligible


@pytest.mark.parametrize("bps", [1, 3333, 5000, 6667, 9999])
def test_the_needed_count_is_the_contracts_threshold(bps):
    for eligible, yes, no in itertools.product(range(1, 13), range(13), range(13)):
        if yes + no > eligible:
            continue
        t = Tally(yes, no, eligible, bps)
        assert _passes(t.needed, eligible, bps) and not _passes(t.needed - 1, eligible, bps)
        # Rejected as soon as every remaining voter saying yes would not reach the quorum.
        rejected = not _passes(eligible - no, eligible, bps)
        assert (t.no_to_reject == 0) == rejected, (eligible, yes, no)
        if not rejected:
            assert not _passes(eligible - (no + t.no_to_reject), eligible, bps)
            assert _passes(eligible - (no + t.no_to_reject - 1), eligible, bps)


def test_the_tally_reads_in_words(consortium):
    from portal.consortium import services
    from portal.consortium.models import Member

    mary, city = (Member.objects.get(governance_address=f.address) for f in consortium[:2])
    proposal = services.removal_propose(proposer=city, member=mary)
    assert quorum_bps() == 5000  # read from the deployed registry
    assert tally_sentences(proposal, 5000) == [
        "2 of 3 needed: more than half of the 3 hospitals at opening.",
        "So far 0 yes and 0 no: 2 more yes votes pass it; 2 more no votes reject it.",
    ]
    proposal = services.vote_cast(voter=city, proposal=proposal, support=False)
    proposal = services.vote_cast(voter=mary, proposal=proposal, support=False)
    assert tally_sentences(proposal, 5000)[1] == "Rejected: 2 no put 2 yes out of reach."
    assert tally_sentences(proposal, None) == ["0 yes and 2 no of the 3 hospitals at opening."]
    assert Tally(0, 0, 4, 2500).share == "more than 25%"
