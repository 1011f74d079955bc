"""Contract reverts as Python exceptions named like the Solidity custom errors.

Each contract prefixes its errors with its own name, as OpenZeppelin's do
(``ConsortiumRegistryUnknownNode``, ``DatasetRegistryUnknownNode``; the shared bases'
``MemberSignedInvalidSignature``, ``QuorumVoteAlreadyVoted``), so one name is one
signature is one selector, and each selector decodes to its own Python class.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string), from require(cond, "message")
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256), from assert and arithmetic checks


class ChainUnavailable(Exception):
    """The JSON-RPC node cannot be reached."""


class ContractError(Exception):
    """A contract call or transaction reverted; subclasses carry the Solidity error's name."""

    name = "ContractError"
    signature: str | None = None  # e.g. "QuorumVoteAlreadyVoted(uint256,uint256)"

    def __init__(self, args_dict: dict[str, Any] | None = None, data: bytes = b"") -> None:
        self.args_dict: dict[str, Any] = dict(args_dict or {})
        self.data = data
        super().__init__(str(self))

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.args_dict.items())
        return f"{self.name}({inner})"


_CLASSES: dict[str, type[ContractError]] = {}


def lookup(name: str, signature: str | None = None) -> type[ContractError]:
    """The exception class for the Solidity error ``name`` (made on demand).

    ``signature`` (from an ABI) pins the class to one selector: a second signature under the
    same name would map two different errors to one class, and is refused.
    """
    cls = _CLASSES.get(name)
    if cls is None:
        cls = type(name, (ContractError,), {"name": name, "__module__": __name__})
        _CLASSES[name] = cls
    if signature is not None:
        if cls.signature is None:
            cls.signature = signature
        elif cls.signature != signature:
            raise TypeError(
                f"the error {name} is declared both as {cls.signature} and as {signature}: "
                "prefix each contract's errors with its name"
            )
    return cls


def error_signature(item: Mapping[str, Any]) -> str:
    """``Name(type,...)`` of an ABI error entry, the text its selector hashes."""
    return f"{item['name']}({','.join(_abi_type(p) for p in item['inputs'])})"


TransactionReverted = lookup("TransactionReverted")  # reverted without data we can decode


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


def _abi_type(param: Mapping[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def error_selectors(abi: Sequence[Mapping[str, Any]]) -> dict[bytes, Mapping[str, Any]]:
    """Map each custom error's 4-byte selector to its ABI entry."""
    out: dict[bytes, Mapping[str, Any]] = {}
    for item in abi:
        if item.get("type") == "error":
            out[function_signature_to_4byte_selector(error_signature(item))] = item
    return out


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by an exception from eth-tester, anvil or another node."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes wrap it: {"data": "0x..."} or {"<txhash>": {...}}
        data = data.get("data") or next(iter(data.values()), None)
        if isinstance(data, dict):
            data = data.get("return") or data.get("data")
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and re.fullmatch(r"0x[0-9a-fA-F]*", data):
        return bytes.fromhex(data[2:])
    rpc = getattr(exc, "rpc_response", None)
    if isinstance(rpc, dict):
        err = rpc.get("error")
        if isinstance(err, dict) and isinstance(err.get("data"), str):
            return revert_data(_WithData(err["data"]))
    message = str(exc.args[0]) if exc.args else str(exc)
    # eth-tester: "execution reverted: b'\x..'" holds the raw bytes' repr.
    match = re.search(r"execution reverted: (b(['\"]).*\2)\s*$", message, re.S)
    if match:
        try:
            raw = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            return None
        return raw if isinstance(raw, bytes) else None
    match = re.search(r"execution reverted: (.*)$", message, re.S)
    if match:  # a reason string already decoded by the provider
        return _ERROR_STRING + _encode_string(match.group(1))
    return None


class _WithData(Exception):
    def __init__(self, data: str) -> None:
        super().__init__(data)
        self.data = data


def _encode_string(text: str) -> bytes:
    return abi_encode(["string"], [text])


def decode_revert(exc: BaseException, abi: Sequence[Mapping[str, Any]]) -> ContractError | None:
    """The ``ContractError`` subclass matching a revert exception, or None if not a revert."""
    data = revert_data(exc)
    if data is None:
        return None
    return decode_data(data, abi)


def decode_data(data: bytes, abi: Sequence[Mapping[str, Any]]) -> ContractError:
    """Decode raw revert data (selector + ABI-encoded arguments) against ``abi``."""
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING:
        return lookup("Error")({"message": abi_decode(["string"], body)[0]}, data)
    if selector == _PANIC:
        return lookup("Panic")({"code": abi_decode(["uint256"], body)[0]}, data)
    item = error_selectors(abi).get(selector)
    if item is None:
        return TransactionReverted({"data": data}, data)
    types = [_abi_type(p) for p in item["inputs"]]
    values = [
        to_checksum_address(v) if t == "address" else v
        for t, v in zip(types, abi_decode(types, body), strict=True)
    ]
    names = [p["name"] or f"arg{i}" for i, p in enumerate(item["inputs"])]
    cls = lookup(item["name"], error_signature(item))
    return cls(dict(zip(names, values, strict=True)), data)
