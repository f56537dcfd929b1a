"""Layers point downwards (DESIGN.md "Layers"), checked on the source with `ast`.

- A surface (cli/, web/, mcp/, proxy/, sidecar/, relay/, api/) never imports keysafe.store or
  keysafe.crypto: it calls one service function.
- Domain modules never import a surface or keysafe.service.
- Agent-side processes (MCP server, local proxy, their HTTP client) import no vault code at all.
- The bottom layer (crypto/, store/) imports nothing of keysafe but itself and keysafe.errors.

Every import form counts: `import a.b`, `from a import b`, relative imports, imports inside
functions or under TYPE_CHECKING, and `importlib.import_module("…")` / `__import__("…")` with a
literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keysafe

PACKAGE_DIR = Path(keysafe.__file__).parent
SURFACES = ("cli", "web", "mcp_server", "local_proxy", "sidecar", "relay", "api")
# Agent-side processes: thin clients of `keysafe serve` that never open the vault themselves.
AGENT_SIDE = ("mcp_server", "local_proxy", "remote")
DOMAIN = (
    "vault", "audit", "crypto", "store", "chains", "policy", "approvals", "agents", "mpc", "kms",
)  # fmt: skip
BOTTOM = ("crypto", "store")


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, path: Path, level: int, target: str | None) -> str:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, target] if target else base)


def imported_names(path: Path, root: Path = PACKAGE_DIR.parent) -> set[str]:
    """Every dotted name `path` imports (`from m import x` gives m.x); `root` holds keysafe/."""
    module = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, path, node.level, node.module)
                if node.level
                else node.module or ""
            )
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _sources(top: str) -> list[Path]:
    folder = PACKAGE_DIR / top
    if folder.is_dir():
        return sorted(folder.rglob("*.py"))
    module = PACKAGE_DIR / f"{top}.py"
    return [module] if module.is_file() else []


def _violations(tops: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for top in tops:
        for path in _sources(top):
            for name in sorted(imported_names(path)):
                if any(_under(name, f) for f in forbidden):
                    found.append(f"{path.relative_to(PACKAGE_DIR.parent)} imports {name}")
    return found


# -- the checker itself ------------------------------------------------------------------------


def test_imported_names_sees_every_import_form(tmp_path: Path) -> None:
    pkg = tmp_path / "keysafe" / "cli"
    pkg.mkdir(parents=True)
    src = pkg / "mod.py"
    src.write_text(
        "import keysafe.store.db\n"
        "from keysafe import crypto\n"
        "from ..vault import vault\n"
        "from . import render\n"
        "def f():\n"
        "    from keysafe.crypto.secret import SecretBytes\n"
        "    importlib.import_module('keysafe.store.tables')\n",
        encoding="utf-8",
    )
    names = imported_names(src, root=tmp_path)
    assert {
        "keysafe.store.db",
        "keysafe.crypto",
        "keysafe.vault.vault",
        "keysafe.cli.render",
        "keysafe.crypto.secret.SecretBytes",
        "keysafe.store.tables",
    } <= names


def test_architecture_scan_finds_the_cli_sources() -> None:
    # Guard against a vacuous pass (a wrong PACKAGE_DIR would find nothing to check).
    assert len(_sources("cli")) >= 3
    assert any(_under(n, "keysafe.service") for p in _sources("cli") for n in imported_names(p))


# -- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_surface_never_imports_store_or_crypto(surface: str) -> None:
    assert _violations((surface,), ("keysafe.store", "keysafe.crypto")) == []


@pytest.mark.parametrize("side", AGENT_SIDE)
def test_agent_side_never_touches_the_vault(side: str) -> None:
    assert _sources(side), side  # not a vacuous pass
    forbidden = ("keysafe.service", "keysafe.store", "keysafe.crypto", "keysafe.vault",
                 "keysafe.chains", "keysafe.policy")  # fmt: skip
    assert _violations((side,), forbidden) == []


@pytest.mark.parametrize("domain", DOMAIN)
def test_domain_never_imports_service_or_surfaces(domain: str) -> None:
    forbidden = ("keysafe.service", *(f"keysafe.{s}" for s in SURFACES))
    assert _violations((domain,), forbidden) == []


@pytest.mark.parametrize("bottom", BOTTOM)
def test_bottom_layer_imports_only_itself_and_errors(bottom: str) -> None:
    allowed = ("keysafe.errors", *(f"keysafe.{b}" for b in BOTTOM))
    bad = []
    for path in _sources(bottom):
        for name in sorted(imported_names(path)):
            if _under(name, "keysafe") and not any(_under(name, a) for a in allowed):
                bad.append(f"{path.relative_to(PACKAGE_DIR.parent)} imports {name}")
    assert bad == []
