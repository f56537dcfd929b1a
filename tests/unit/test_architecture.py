"""Layers point downwards (DESIGN.md "Layers"), checked on the source with `ast`.

- A surface (cli/, api/, mcp_server/, local_proxy, remote, client/) never imports keysafe.store or
  keysafe.crypto, nor keysafe.vault, keysafe.mpc or keysafe.policy beyond a short allow-list
  where each entry names the one thing imported and why: it calls one service function.
- Domain modules never import a surface or keysafe.service.
- Agent-side processes (MCP server, local proxy, their HTTP client) import no vault code at all.
- The bottom layer (crypto/, store/) imports nothing of keysafe but itself and keysafe.errors.
- keysafe.service.* modules import each other without a cycle, and never from inside a function
  (a function-local import is how a cycle hides: ISSUE 12, acceptance 4).
- Every package or module named below exists, so no rule passes by checking nothing.

Every import form counts: `import a.b`, `from a import b`, relative imports, imports inside
functions or under TYPE_CHECKING, and `importlib.import_module("…")` / `__import__("…")` with a
literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

import keysafe

PACKAGE_DIR = Path(keysafe.__file__).parent
SURFACES = ("cli", "api", "mcp_server", "local_proxy", "remote", "client", "sidecar")
# Agent-side processes: thin clients of `keysafe serve` that never open the vault themselves,
# the public agent client, and the answer models it shares with the server.
AGENT_SIDE = ("mcp_server", "local_proxy", "remote", "client", "agent_models", "sidecar")
DOMAIN = ("vault", "audit", "crypto", "store", "chains", "policy", "mpc", "relay", "notify")
BOTTOM = ("crypto", "store")
# Domain internals a surface reaches only through keysafe.service.
BEHIND_SERVICE = ("keysafe.vault", "keysafe.mpc", "keysafe.policy")
# What surfaces still import from BEHIND_SERVICE today: (file under keysafe/, exact name) -> why.
# Exact names, never a package prefix: anything new fails. Each is a candidate for a service
# function or a re-exported type (reported to the lead, issue 12).
SURFACE_ALLOWED: dict[tuple[str, str], str] = {
    (
        "cli/policy_cmds.py",
        "keysafe.policy.engine.Decision",
    ): "`keysafe policy check` prints the engine's decision (type only)",
    (
        "cli/policy_cmds.py",
        "keysafe.policy.intent.intent_from_json",
    ): "`keysafe policy check` decodes the request file offline, without a vault",
    (
        "cli/registries.py",
        "keysafe.policy.registry.Registry",
    ): "`keysafe policy check` lints against the built-in registry offline",
    (
        "cli/vault_cmds.py",
        "keysafe.vault.vault.Vault",
    ): "the unlocked vault handle the CLI passes to service calls (type only)",
    (
        "cli/unlocking.py",
        "keysafe.vault.vault.Vault",
    ): "the unlocked vault handle the CLI passes to service calls (type only)",
    (
        "cli/server_cmds.py",
        "keysafe.vault.vault.Vault",
    ): "the unlocked vault handle the CLI passes to service calls (type only)",
    (
        "cli/audit_cmds.py",
        "keysafe.vault.vault.Vault",
    ): "the unlocked vault handle the CLI passes to service calls (type only)",
    (
        "cli/owner.py",
        "keysafe.vault.vault.Vault",
    ): "the unlocked vault handle the CLI passes to service calls (type only)",
    (
        "cli/home.py",
        "keysafe.vault.vault.Vault",
    ): "the opened vault handle `read_vault` passes to service calls (type only)",
    (
        "cli/demo_cmd.py",
        "keysafe.vault.vault.Vault",
    ): "the demo holds the vault handle it passes to service calls (type only)",
    (
        "api/state.py",
        "keysafe.vault.vault.Vault",
    ): "the server state holds the unlocked vault handle it passes to service calls",
    (
        "api/notifier.py",
        "keysafe.vault.vault.Vault",
    ): "the server's notifier holds the vault handle it passes to service calls",
    (
        "api/relay_end.py",
        "keysafe.vault.vault.Vault",
    ): "the relay's vault end holds the unlocked vault handle it passes to service calls",
    (
        "cli/wallet_cmds.py",
        "keysafe.mpc.share_file",
    ): "reads the owner's recovery / agent share files from disk before a service call",
    (
        "cli/keygen.py",
        "keysafe.mpc.share_file",
    ): "seals and writes this process's own new share (recovery or agent) to its file",
    (
        "cli/keygen.py",
        "keysafe.mpc.ceremony",
    ): "runs this process's own party of a key ceremony (recovery, or the agent's host)",
    # The MCP server is the agent's party in 2-of-3 FROST: it holds the agent's own share and runs
    # its rounds locally (the vault never sees that share).
    ("mcp_server/threshold.py", "keysafe.mpc.frost.keys.KeyPackage"): "the agent's FROST share",
    ("mcp_server/threshold.py", "keysafe.mpc.frost.keys.AGENT"): "the agent's FROST party id",
    (
        "mcp_server/threshold.py",
        "keysafe.mpc.frost.cosigner",
    ): "the agent's FROST rounds (the side that is not the vault's)",
    ("mcp_server/threshold.py", "keysafe.mpc.share_file"): "reads the agent's share file",
    (
        "mcp_server/threshold.py",
        "keysafe.mpc.share_file.SecretBytes",
    ): "the share's secret bytes as share_file hands them out",
    ("mcp_server/threshold.py", "keysafe.mpc.share_file.Share"): "the agent's 2-of-3 shares",
    # ... and in 2-of-3 DKLs23 (EVM): it hashes the transaction itself and runs its rounds.
    ("mcp_server/threshold.py", "keysafe.mpc.frost.keys.USER"): "the vault's party id (culprit)",
    (
        "mcp_server/threshold.py",
        "keysafe.mpc.dkls.cosigner",
    ): "the agent's DKLs23 rounds (the side that is not the vault's)",
    # ... and, before it adds its share, checks the agent host's own copy of its policy with the
    # same engine and decoders as the vault (issue 16: defence in depth).
    ("mcp_server/own_policy.py", "keysafe.mpc.share_file.Share"): "the share being used (type)",
    # ... and joins its agent's key ceremonies by itself with the owner's join key.
    ("mcp_server/auto_join.py", "keysafe.mpc.ceremony"): "the agent's party of a ceremony",
    ("mcp_server/auto_join.py", "keysafe.mpc.share_file"): "reads back the new share file",
    ("mcp_server/auto_join.py", "keysafe.mpc.share_file.SecretBytes"): "the share key, held",
    ("mcp_server/own_policy.py", "keysafe.policy.engine"): "the policy engine's decision",
    ("mcp_server/own_policy.py", "keysafe.policy.intent.Intent"): "the decoded request (type)",
    ("mcp_server/own_policy.py", "keysafe.policy.lint.lint"): "the copy is checked at start",
    ("mcp_server/own_policy.py", "keysafe.policy.registry.ChainInfo"): "built-in chains (type)",
    ("mcp_server/own_policy.py", "keysafe.policy.registry.Registry"): "the built-in registry",
    ("mcp_server/own_policy.py", "keysafe.policy.rules.Policy"): "the parsed copy (type)",
    ("mcp_server/own_policy.py", "keysafe.policy.rules.parse_policy"): "reads the copy",
}
# The one agent-side module that decodes requests and evaluates a policy: the agent host's own
# check before its share is used (mcp_server/own_policy.py). Domain code only, never the vault's.
AGENT_SIDE_DOMAIN: dict[str, tuple[str, ...]] = {
    "mcp_server/own_policy.py": ("keysafe.chains", "keysafe.policy")
}


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


def _names_of(node: ast.AST, module: str, path: Path) -> list[str]:
    """The dotted names one AST node imports (`from m import x` gives m.x), if it imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = (
            _resolve_relative(module, path, node.level, node.module)
            if node.level
            else node.module or ""
        )
        return [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call):
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if fname in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return [arg.value]
    return []


@dataclass(frozen=True)
class Import:
    """One imported name, where it is, and whether it sits inside a function body."""

    name: str
    line: int
    local: bool


def imports_of(path: Path, root: Path = PACKAGE_DIR.parent) -> list[Import]:
    """Every import in `path`, top-level or nested at any depth; `root` holds keysafe/."""
    module = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            lineno = getattr(child, "lineno", 0)
            found.extend(Import(n, lineno, inner) for n in _names_of(child, module, path))
            visit(child, inner)

    visit(tree, False)
    return found


def imported_names(path: Path, root: Path = PACKAGE_DIR.parent) -> set[str]:
    """Every dotted name `path` imports (`from m import x` gives m.x); `root` holds keysafe/."""
    return {i.name for i in imports_of(path, root)}


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


@dataclass(frozen=True)
class Edge:
    """`src` imports `dst` (both keysafe.service modules) at `path`:`line`."""

    src: str
    dst: str
    path: str
    line: int
    local: bool

    def __str__(self) -> str:
        where = "inside a function" if self.local else "at module level"
        return f"{self.path}:{self.line} imports {self.dst} {where}"


def _landing(name: str, modules: Collection[str]) -> str | None:
    """The module an imported dotted name lands in: its longest prefix that is a module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def package_edges(package: str, root: Path = PACKAGE_DIR.parent) -> list[Edge]:
    """Every import between two modules of `package` (dotted), function-local ones included."""
    folder = root.joinpath(*package.split("."))
    paths = {_module_name(p, root): p for p in sorted(folder.rglob("*.py"))}
    edges: list[Edge] = []
    for src, path in paths.items():
        for imp in imports_of(path, root):
            dst = _landing(imp.name, paths)
            if dst is not None and dst != src:
                rel = str(path.relative_to(root))
                edges.append(Edge(src, dst, rel, imp.line, imp.local))
    return edges


@dataclass(frozen=True)
class Cycle:
    """A strongly connected group of modules, and one cycle through its first module."""

    modules: list[str]
    edges: list[Edge]

    def __str__(self) -> str:
        path = " -> ".join([self.edges[0].src, *(e.dst for e in self.edges)])
        lines = [f"  {path}", *(f"    {e}" for e in self.edges)]
        if len(self.modules) > len(self.edges):
            lines.append(f"    (all modules tied up with it: {', '.join(self.modules)})")
        return "\n".join(lines)


def import_cycles(edges: list[Edge]) -> list[Cycle]:
    """One cycle per strongly connected component of the import graph (Tarjan), if any."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.src, {}).setdefault(e.dst, e)
        graph.setdefault(e.dst, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles: list[Cycle] = []
    for component in components:
        # Shortest way back to the component's first module, inside the component (BFS).
        start = min(component)
        came: dict[str, Edge] = {}
        frontier = [start]
        while frontier and start not in came:
            nxt: list[str] = []
            for v in frontier:
                for w, e in sorted(graph[v].items()):
                    if w in component and w not in came:
                        came[w] = e
                        nxt.append(w)
            frontier = nxt
        cycle = [came[start]]
        while cycle[-1].src != start:
            cycle.append(came[cycle[-1].src])
        cycles.append(Cycle(sorted(component), cycle[::-1]))
    return cycles


def _exists(dotted: str, root: Path = PACKAGE_DIR.parent) -> bool:
    """A real module or package (not a namespace accident): keysafe/x.py
    or keysafe/x/__init__.py."""
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


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


def _tiny_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "keysafe" / "service"
    pkg.mkdir(parents=True)
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_import_cycles_finds_a_cycle_closed_by_a_function_local_import(tmp_path: Path) -> None:
    root = _tiny_package(
        tmp_path,
        {
            "a.py": "from keysafe.service import b\n",
            "b.py": "from . import c\n",
            "c.py": "def f():\n    from keysafe.service.a import thing\n",
            "d.py": "import keysafe.service.a\n",  # into the cycle, not on it
        },
    )
    edges = package_edges("keysafe.service", root)
    assert [e for e in edges if e.local] == [
        Edge("keysafe.service.c", "keysafe.service.a", "keysafe/service/c.py", 2, True)
    ]
    cycles = import_cycles(edges)
    assert len(cycles) == 1
    assert str(cycles[0]).splitlines()[0] == (
        "  keysafe.service.a -> keysafe.service.b -> keysafe.service.c -> keysafe.service.a"
    )
    assert cycles[0].modules == ["keysafe.service.a", "keysafe.service.b", "keysafe.service.c"]


def test_import_cycles_none_for_a_chain(tmp_path: Path) -> None:
    root = _tiny_package(
        tmp_path, {"a.py": "from . import b\n", "b.py": "def f():\n    from . import c\n"}
    )
    assert import_cycles(package_edges("keysafe.service", root)) == []


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
    forbidden = (
        "keysafe.service",
        "keysafe.store",
        "keysafe.crypto",
        "keysafe.vault",
        "keysafe.chains",
        "keysafe.policy",
    )
    bad = [
        v
        for v in _violations((side,), forbidden)
        if not any(
            v.startswith(f"keysafe/{rel} imports {top}")
            for rel, tops in AGENT_SIDE_DOMAIN.items()
            for top in tops
        )
    ]
    assert bad == []


@pytest.mark.parametrize("domain", DOMAIN)
def test_domain_never_imports_service_or_surfaces(domain: str) -> None:
    forbidden = ("keysafe.service", *(f"keysafe.{s}" for s in SURFACES))
    assert _violations((domain,), forbidden) == []


@pytest.mark.parametrize("bottom", BOTTOM)
def test_bottom_layer_imports_only_itself_and_errors(bottom: str) -> None:
    allowed = ("keysafe.errors", *(f"keysafe.{b}" for b in BOTTOM))
    bad: list[str] = []
    for path in _sources(bottom):
        for name in sorted(imported_names(path)):
            if _under(name, "keysafe") and not any(_under(name, a) for a in allowed):
                bad.append(f"{path.relative_to(PACKAGE_DIR.parent)} imports {name}")
    assert bad == []


@pytest.mark.parametrize("surface", SURFACES)
def test_surface_reaches_vault_mpc_policy_only_through_service(surface: str) -> None:
    bad: list[str] = []
    for path in _sources(surface):
        rel = str(path.relative_to(PACKAGE_DIR))
        for name in sorted(imported_names(path)):
            if any(_under(name, b) for b in BEHIND_SERVICE) and (rel, name) not in SURFACE_ALLOWED:
                bad.append(f"keysafe/{rel} imports {name}")
    assert bad == [], "call a keysafe.service function instead:\n" + "\n".join(bad)


def test_surface_allow_list_has_no_stale_entry() -> None:
    """An entry nothing uses any more would quietly allow that import again later."""
    stale = [
        f"{rel}: {name}"
        for rel, name in SURFACE_ALLOWED
        if not (PACKAGE_DIR / rel).is_file() or name not in imported_names(PACKAGE_DIR / rel)
    ]
    assert stale == []
    assert all(any(_under(n, b) for b in BEHIND_SERVICE) for _, n in SURFACE_ALLOWED)


# Test support ships in the wheel for the demo and the benchmarks; keysafe's own paths never
# lean on it (a fake clock or a cheap KDF must not be one import away from a real vault).
TESTING_USERS = ("cli/demo_cmd.py",)


def test_only_the_demo_imports_the_test_support_package() -> None:
    assert _sources("testing")
    bad = [
        f"keysafe/{path.relative_to(PACKAGE_DIR)} imports {name}"
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if not _under(_module_name(path, PACKAGE_DIR.parent), "keysafe.testing")
        and str(path.relative_to(PACKAGE_DIR)) not in TESTING_USERS
        for name in sorted(imported_names(path))
        if _under(name, "keysafe.testing")
    ]
    assert bad == []
    assert _violations(("testing",), tuple(f"keysafe.{s}" for s in SURFACES)) == []


def test_every_listed_module_exists() -> None:
    """No vacuous rule: each package or module the rules above name is really there."""
    tops = {*SURFACES, *AGENT_SIDE, *DOMAIN, *BOTTOM, "service"}
    dotted = {f"keysafe.{t}" for t in tops} | set(BEHIND_SERVICE)
    missing = sorted(d for d in dotted if not _exists(d))
    assert missing == []
    assert all(_sources(t) for t in tops)


def test_service_modules_import_each_other_without_a_cycle() -> None:
    """Function-local imports count: deferring an import hides a cycle, it does not remove it."""
    edges = package_edges("keysafe.service")
    assert len({e.src for e in edges}) >= 5  # not a vacuous pass: the service layer was scanned
    cycles = import_cycles(edges)
    assert not cycles, "import cycles among keysafe.service modules:\n" + "\n".join(
        str(c) for c in cycles
    )


def test_service_modules_import_each_other_only_at_module_level() -> None:
    edges = package_edges("keysafe.service")
    assert any(not e.local for e in edges)  # not a vacuous pass
    local = [str(e) for e in edges if e.local]
    assert not local, "function-local imports between service modules:\n" + "\n".join(local)
