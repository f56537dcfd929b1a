"""Options and arguments several commands share, declared once as `Annotated` aliases.

A command names the alias as its parameter's type (`json_out: JsonFlag = False`), so every
command that takes `--json` or `--passphrase-file` spells and explains it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the vault passphrase from this file (else KEYSAFE_PASSPHRASE, else a prompt).",
        dir_okay=False,
    ),
]
KmsTokenFile = Annotated[
    Path | None,
    typer.Option(
        "--kms-token-file",
        help="Read the KMS token (OpenBao) from this file (else KEYSAFE_KMS_TOKEN_FILE, else "
        "KEYSAFE_KMS_TOKEN). It is never stored or printed.",
        dir_okay=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SealYesFlag = Annotated[
    bool, typer.Option("--yes", help="Seal what is listed without asking (scripts).")
]
Port = Annotated[int, typer.Option("--port", help="Port.", min=1, max=65535)]


@dataclass(frozen=True, slots=True)
class OwnerCeremony:
    """The owner's side of a 2-of-3 ceremony (`wallet create --threshold`, `wallet refresh`), as
    its options give it: the recovery file this process writes, how to reach and unlock the
    vault's server, and how the agent's host learns to join."""

    recovery_file: Path
    passphrase_file: Path | None
    join_code_file: Path | None
    join_key_file: Path | None
    vault_url: str | None
