"""The event decoder gives what web3's own ``get_event_data`` gives, log for log."""

from __future__ import annotations

from chain_helpers import CITY, MARY, deploy_registry
from eth_utils import keccak
from web3 import Web3
from web3._utils.events import get_event_data

from chain.client import ChainClient
from chain.consortium_registry import Scope
from chain.events import EventDecoder

DELEGATE = Web3.to_checksum_address("0x" + "5e" * 20)


def test_it_decodes_every_registry_event_as_web3_does(tester_client: ChainClient) -> None:
    start = tester_client.head() + 1
    reg = deploy_registry(tester_client)
    node = keccak(text="events-node")
    reg.register_node(node, CITY.address, b"\x01" * 32, sender_key=MARY.key)
    reg.rotate_node_key(node, b"\x02" * 32, sender_key=MARY.key)
    reg.revoke_node(node, sender_key=MARY.key)
    reg.set_delegate(DELEGATE, Scope.DATA, True, sender_key=CITY.key)
    reg.set_delegate(DELEGATE, Scope.DATA, False, sender_key=CITY.key)
    opened = reg.propose_removal(3, sender_key=MARY.key)
    proposal = reg.proposal_id_from(reg.decode_events(opened))
    reg.vote(proposal, True, sender_key=MARY.key)
    logs = tester_client.w3.eth.get_logs({"address": reg.address, "fromBlock": start})
    decoder = EventDecoder([reg.abi])
    by_topic = {
        bytes(Web3.keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")): e
        for e in reg.abi
        if e.get("type") == "event"
    }
    names = set()
    for log in logs:
        ours = decoder.decode(log)
        theirs = get_event_data(Web3().codec, by_topic[bytes(log["topics"][0])], log)
        assert ours is not None
        assert (ours.name, ours.args) == (theirs["event"], dict(theirs["args"]))
        names.add(ours.name)
    assert names >= {
        "MemberAdmitted",
        "NodeRegistered",
        "NodeKeyRotated",
        "NodeRevoked",
        "DelegateSet",
        "ProposalOpened",
        "VoteCast",
    }
