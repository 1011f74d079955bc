"""One web3 connection: in-process eth-tester or any JSON-RPC node, with local signing."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ProviderConnectionError
from web3.types import FilterParams, LogReceipt, TxParams, TxReceipt, Wei

from chain.artifacts import load_artifact
from chain.errors import ChainUnavailable, ContractError, TransactionReverted, decode_revert

DEFAULT_GAS = 1_000_000
DEPLOY_GAS = 8_000_000


def rpc_session(url: str, *, connections: int = 32) -> requests.Session:
    """One HTTP session for every thread that calls ``url``, with the environment's proxy
    and CA bundle settings read once.

    web3 otherwise keeps a session per thread, and requests reads the environment's proxy
    variables (walking all of ``os.environ``, twice) on every call: a fifth of the CPU time
    of the portal's /health, which asks the node its head. requests' sessions and their
    connection pools are used from many threads at once; ``connections`` is how many idle
    connections to the node the pool keeps.
    """
    session = requests.Session()
    session.trust_env = False  # read here, once, instead of on every call
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    adapter = HTTPAdapter(pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class ChainClient:
    """Wraps web3: deploys, sends signed transactions and surfaces reverts as ``ContractError``."""

    def __init__(self, w3: Web3, *, relayer_key: str | None = None, tester: bool = False) -> None:
        self.w3 = w3
        self.tester = tester
        self._chain_id: int | None = None
        self._relayer_account: LocalAccount | None = (
            Account.from_key(relayer_key) if relayer_key else None
        )
        self._relayer: ChecksumAddress | None = (
            self._relayer_account.address
            if self._relayer_account is not None
            else (w3.eth.accounts[0] if tester else None)
        )

    @classmethod
    def in_process(cls) -> ChainClient:
        """A fresh in-process eth-tester chain; the relayer is its first funded account."""
        return cls(Web3(EthereumTesterProvider()), tester=True)

    @classmethod
    def from_url(cls, url: str, *, relayer_key: str | None, timeout: float = 30) -> ChainClient:
        """Connect to a JSON-RPC node; ``relayer_key`` signs (locally) the transactions it pays for.

        Without a key the client is read-only (views, events) unless each send passes sender_key.
        """
        provider = HTTPProvider(url, request_kwargs={"timeout": timeout}, session=rpc_session(url))
        client = cls(Web3(provider), relayer_key=relayer_key)
        client.head()  # fail now, not at the first transaction
        return client

    @property
    def relayer(self) -> ChecksumAddress:
        """The address that pays gas for transactions sent without a sender_key."""
        if self._relayer is None:
            raise ValueError("this client has no relayer key")
        return self._relayer

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc(lambda: self.w3.eth.chain_id)
        return self._chain_id

    def head(self) -> int:
        """The latest block number."""
        return int(self._rpc(lambda: self.w3.eth.block_number))

    def block_hash(self, number: int) -> str | None:
        """The 0x-hash of block ``number`` on the current chain, or None past the head."""
        try:
            block = self._rpc(lambda: self.w3.eth.get_block(number))
        except Exception as exc:
            # web3 raises BlockNotFound; eth-tester's own BlockNotFound may surface unwrapped.
            if type(exc).__name__ in {"BlockNotFound", "BlockNumberOutOfRange"}:
                return None
            raise
        return "0x" + bytes(block["hash"]).hex()

    def get_logs(
        self, addresses: Sequence[str], from_block: int, to_block: int
    ) -> list[LogReceipt]:
        """``eth_getLogs`` for ``addresses`` over an inclusive block range (keep it short)."""
        params = cast(
            FilterParams,
            {
                "address": [Web3.to_checksum_address(a) for a in addresses],
                "fromBlock": from_block,
                "toBlock": to_block,
            },
        )
        return list(self._rpc(lambda: self.w3.eth.get_logs(params)))

    def contract(self, name: str, address: str) -> Contract:
        """A web3 contract object for the committed artifact ``name`` at ``address``."""
        artifact = load_artifact(name)
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    def deploy(
        self, name: str, *args: Any, sender_key: str | None = None, gas: int = DEPLOY_GAS
    ) -> str:
        """Deploy the committed artifact ``name`` with constructor ``args``; returns its address."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self._send(
            factory.constructor(*args), artifact.abi, sender_key=sender_key, gas=gas
        )
        address = receipt["contractAddress"]
        assert address is not None
        return str(address)

    def transact(
        self,
        fn: ContractFunction,
        *,
        sender_key: str | None = None,
        gas: int = DEFAULT_GAS,
        value: int = 0,
    ) -> TxReceipt:
        """Send ``fn`` and wait for its receipt; a revert raises the decoded ContractError."""
        return self._send(fn, fn.contract_abi, sender_key=sender_key, gas=gas, value=value)

    def call(
        self, fn: ContractFunction, *, block: int | str = "latest", sender: str | None = None
    ) -> Any:
        """Call a view, or simulate a transaction from ``sender``; reverts raise ContractError."""
        params = cast(TxParams, {"from": Web3.to_checksum_address(sender)} if sender else {})
        try:
            return self._rpc(lambda: fn.call(params, block_identifier=block))  # type: ignore[arg-type]
        except ContractError:
            raise
        except Exception as exc:
            decoded = decode_revert(exc, fn.contract_abi)
            if decoded is None:
                raise
            raise decoded from exc

    def fund(self, address: str, wei: int) -> TxReceipt:
        """Send ``wei`` from the relayer to ``address`` (to pay gas for a raw key on eth-tester)."""
        tx: TxParams = {
            "to": Web3.to_checksum_address(address),
            "value": Wei(wei),
            "gas": 21_000,
        }
        return self._send_params(tx, None, abi=[])

    def balance(self, address: str) -> int:
        return int(self._rpc(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address))))

    def _send(
        self,
        fn: Any,
        abi: Sequence[Mapping[str, Any]],
        *,
        sender_key: str | None,
        gas: int,
        value: int = 0,
    ) -> TxReceipt:
        sender = self._sender(sender_key)
        with _reverts_decoded(abi):
            tx = fn.build_transaction({"from": sender, "gas": gas, "value": value, "nonce": 0})
        del tx["nonce"]
        if tx.get("to"):
            self._simulate(tx, abi)
        return self._send_params(tx, sender_key, abi=abi)

    def _simulate(self, tx: TxParams, abi: Sequence[Mapping[str, Any]]) -> None:
        """Run the transaction as a call first: one that would revert is never sent, so
        nobody makes the relayer pay gas for a revert, and the error comes back decoded."""
        call = _as_call(tx)
        with _reverts_decoded(abi, passing=(ChainUnavailable,)):
            self._rpc(lambda: self.w3.eth.call(call, block_identifier="latest"))

    def _sender(self, sender_key: str | None) -> ChecksumAddress:
        if sender_key is not None:
            return Account.from_key(sender_key).address
        return self.relayer

    def _send_params(
        self, tx: TxParams, sender_key: str | None, *, abi: Sequence[Mapping[str, Any]]
    ) -> TxReceipt:
        account = Account.from_key(sender_key) if sender_key else self._relayer_account
        with _reverts_decoded(abi, passing=(ContractError,)):
            if account is None:  # an eth-tester managed (unlocked) account
                tx["from"] = self.relayer
                tx_hash = self._rpc(lambda: self.w3.eth.send_transaction(tx))
            else:
                tx["from"] = account.address
                tx["nonce"] = self._rpc(
                    lambda: self.w3.eth.get_transaction_count(account.address, "pending")
                )
                tx["chainId"] = self.chain_id
                self._fill_fees(tx)
                signed = account.sign_transaction(cast(dict[str, Any], tx))
                tx_hash = self._rpc(
                    lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction)
                )
        receipt = self._rpc(lambda: self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60))
        if receipt["status"] == 0:
            raise self._replay_revert(tx, receipt, abi)
        return receipt

    def _fill_fees(self, tx: TxParams) -> None:
        if "gasPrice" in tx or "maxFeePerGas" in tx:
            return
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            tx["gasPrice"] = self.w3.eth.gas_price
            return
        tip = Wei(1_000_000_000)
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = Wei(2 * int(base) + tip)

    def _replay_revert(
        self, tx: TxParams, receipt: TxReceipt, abi: Sequence[Mapping[str, Any]]
    ) -> ContractError:
        """Re-run a failed transaction as a call on its parent block to read its revert data."""
        call = _as_call(tx)
        try:
            self.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)
        except Exception as exc:
            decoded = decode_revert(exc, abi)
            if decoded is not None:
                return decoded
        return TransactionReverted(
            {"tx_hash": "0x" + bytes(HexBytes(receipt["transactionHash"])).hex()}
        )

    def _rpc(self, thunk: Any) -> Any:
        try:
            return thunk()
        except (RequestsConnectionError, ConnectionRefusedError, ProviderConnectionError) as exc:
            raise ChainUnavailable(str(exc)) from exc


@contextmanager
def _reverts_decoded(
    abi: Sequence[Mapping[str, Any]], *, passing: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """A revert the node reports comes out as the contract's own ``ContractError``; what
    cannot be decoded, and the `passing` kinds, come out as they are."""
    try:
        yield
    except passing:
        raise
    except Exception as exc:
        decoded = decode_revert(exc, abi)
        if decoded is None:
            raise
        raise decoded from exc


def _as_call(tx: TxParams) -> TxParams:
    """The parts of a transaction an `eth_call` replays (no nonce, fees or chain id)."""
    keep = ("from", "to", "data", "value", "gas")
    return cast(TxParams, {k: v for k, v in tx.items() if k in keep})
