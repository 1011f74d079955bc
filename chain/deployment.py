"""The chain's deployment record: which chain, and where its registries live.

Hospital-side tools (a training node, the steward's uploader) read the contract
addresses from this record, pinned in their own configuration, and never from
the portal: a portal that names other contracts is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_utils import is_address, to_checksum_address

REGISTRY = "ConsortiumRegistry"
DATASETS = "DatasetRegistry"


class RecordError(ValueError):
    """The deployment record is missing or unreadable; the message says which and why."""


@dataclass(frozen=True)
class DeploymentRecord:
    chain_id: int
    registry: str  # ConsortiumRegistry
    datasets: str  # DatasetRegistry

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: object, *, where: str = "the deployment record") -> DeploymentRecord:
        if not isinstance(data, dict):
            raise RecordError(f"{where} is not a JSON object")
        try:
            chain_id = int(data["chain_id"])
            addresses = [str(data["registry"]), str(data["datasets"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"{where} lacks chain_id, registry or datasets: {exc}") from None
        for address in addresses:
            if not is_address(address):
                raise RecordError(f"{where} holds {address!r}, not a contract address")
        registry, datasets = (to_checksum_address(a) for a in addresses)
        return cls(chain_id=chain_id, registry=registry, datasets=datasets)

    @classmethod
    def load(cls, path: Path) -> DeploymentRecord:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RecordError(f"no chain deployment record at {path}") from None
        except (OSError, ValueError) as exc:
            raise RecordError(f"cannot read the chain deployment record {path}: {exc}") from None
        return cls.from_dict(data, where=f"the chain deployment record {path}")
