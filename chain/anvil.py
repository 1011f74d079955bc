"""A local anvil node (npm @foundry-rs/anvil) as a child process with a persistent state file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
ANVIL_BINARY = (
    CONTRACTS_DIR / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
)
DEV_MNEMONIC = "test test test test test test test test test test test junk"

# Keys anvil derives from DEV_MNEMONIC (m/44'/60'/0'/0/i): public knowledge, demo/tests only.
ANVIL_DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


class AnvilNode:
    """Starts and stops the anvil binary itself (an npx wrapper would outlive a kill)."""

    def __init__(
        self,
        state_file: Path,
        port: int,
        *,
        chain_id: int = 31337,
        mnemonic: str = DEV_MNEMONIC,
        block_time: int | None = None,
        state_interval: int | None = None,
        binary: Path = ANVIL_BINARY,
        log_file: Path | None = None,
    ) -> None:
        self.state_file = Path(state_file)
        self.port = port
        self.chain_id = chain_id
        self.mnemonic = mnemonic
        self.block_time = block_time
        self.state_interval = state_interval
        self.binary = Path(binary)
        self.log_file = log_file or self.state_file.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--mnemonic", self.mnemonic,
            "--state", str(self.state_file),
        ]  # fmt: skip
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.state_interval is not None:
            cmd += ["--state-interval", str(self.state_interval)]
        return cmd

    def start(self, *, timeout: float = 30) -> AnvilNode:
        """Start anvil (loading the state file if it exists) and wait until it answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary}: run `npm ci --prefix contracts`")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float = 30) -> None:
        """Poll eth_chainId until the node answers (or the process dies, or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"anvil exited with {self._proc.returncode}; see {self.log_file}"
                )
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"anvil on {self.url} not ready after {timeout} s")
            time.sleep(0.1)

    def is_ready(self) -> bool:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return "result" in json.loads(response.read())
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def stop(self, *, timeout: float = 30) -> None:
        """SIGTERM and wait, so anvil dumps its state file before exiting."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: state since the last dump is lost (as in a crash)."""
        self._signal(signal.SIGKILL, 10)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
