"""The hospital admin's one-off: derive the member's UID secret from its governance key
and write it to a file for the stewards (chain/uid_secret.py says how, and why only the
governance key can). The browser's upload page derives the same bytes from the wallet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain import uid_secret
from chain.keystore import read_keystore


class Command(BaseCommand):
    help = "Write your hospital's UID secret, derived from its governance keystore, to a file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--keystore", type=Path, required=True, help="the governance keystore")
        parser.add_argument("--password-file", type=Path, required=True)
        parser.add_argument("--out", type=Path, default=Path("uid-secret.bin"))

    def handle(self, *args: Any, **options: Any) -> None:
        keystore, out = Path(options["keystore"]), Path(options["out"])
        try:
            password = Path(options["password_file"]).read_text().strip()
            key = read_keystore(keystore, password)
        except OSError as exc:
            raise CommandError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except (ValueError, KeyError) as exc:
            raise CommandError(f"cannot unlock {keystore}: {exc}") from None
        if out.exists():
            raise CommandError(f"{out} exists: the secret never changes, keep the one you have")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(uid_secret.derive(key))
        self.stdout.write(f"wrote {out} (32 bytes): give it to your data stewards, keep it secret")
