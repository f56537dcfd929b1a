"""One type for a chain family: the registry, the decoders and the services share `Chain`."""

from __future__ import annotations

import json

from keysafe.chains import Chain
from keysafe.policy.registry import Registry


def test_every_builtin_chain_names_its_family_with_the_chain_enum() -> None:
    families = [c.family for c in Registry.builtin().chains]
    assert all(isinstance(f, Chain) for f in families)
    assert set(families) == set(Chain)


def test_chain_family_reads_and_writes_as_its_plain_name() -> None:
    assert Chain("evm") is Chain.EVM
    assert Chain.SOLANA == "solana"
    assert json.dumps({"family": Chain.EVM}) == '{"family": "evm"}'
    assert f"{Chain.SOLANA}" == "solana"
