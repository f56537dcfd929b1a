"""The chain and asset registry a command reads from this home without the passphrase."""

from __future__ import annotations

from keysafe.cli.home import home
from keysafe.policy.registry import Registry
from keysafe.service import registry
from keysafe.service.context import open_vault


def vault_registry() -> Registry | None:
    """This vault's registry, or None when there is no vault here."""
    h = home()
    if not h.exists():
        return None
    with open_vault(h) as vault:
        return registry.registry(vault)


def registry_here() -> Registry:
    """This vault's registry, or the built-in one when there is no vault here."""
    found = vault_registry()
    return Registry.builtin() if found is None else found
