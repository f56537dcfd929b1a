"""The CLI imports only the module of the command it runs (keysafe/cli/app.py COMMANDS, GROUPS);
this checks those tables against what the modules really define, so no command can go missing."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from keysafe.cli import app as cli


def _cli_sources() -> list[Path]:
    return sorted(Path(cli.__file__).parent.glob("*.py"))


def test_the_tables_name_every_command_and_the_module_that_defines_it() -> None:
    cli.register([])  # no command named: every module
    built = typer.main.get_command(cli.app)
    assert list(built.commands) == [*cli.COMMANDS, *cli.GROUPS]  # type: ignore[attr-defined]  # a TyperGroup
    for name, module in cli.COMMANDS.items():
        callback = built.commands[name].callback  # type: ignore[attr-defined]  # a TyperGroup
        assert callback.__module__ == f"keysafe.cli.{module}", name
    for name, (module, attribute) in cli.GROUPS.items():
        mounted = next(g for g in cli.app.registered_groups if g.name == name)
        assert mounted.typer_instance is getattr(sys.modules[f"keysafe.cli.{module}"], attribute)


def test_only_the_root_mounts_commands_on_the_app() -> None:
    """No module registers on `app` as a side effect of being imported: none imports it."""
    for path in _cli_sources():
        if path.name in ("app.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "keysafe.cli.app", path.name
                if node.module == "keysafe.cli":
                    assert all(alias.name != "app" for alias in node.names), path.name


def test_a_command_imports_only_its_own_module() -> None:
    probe = (
        "import sys; from keysafe.cli import app; app.register(['agent', 'list']); "
        "print(sorted(m for m in sys.modules if m.startswith('keysafe.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "keysafe.cli.agent_cmds" in loaded
    for other in ("wallet_cmds", "server_cmds", "surface_cmds", "demo_cmd", "backup_cmds"):
        assert f"keysafe.cli.{other}" not in loaded, loaded


# typer 0.29's own forms: `<str>`, `<int range>`, `<bool>` after a flag, `<stdio|http>`,
# `<list[str]>`, and `{name}` for a required argument in the usage line. keysafe's help writes
# them as click does (cli/metavars.py).
_TYPER_TYPES = re.compile(
    r"<(?:str|int|float|bool|file|dir|path|datetime|uuid|int range|float range|list\[[^\]]*\]"
    r"|[\w.-]+(?:\|[\w.-]+)+)>"
)
_TYPER_USAGE_ARGUMENT = re.compile(r"Usage: .*\{[a-z_]+\}")


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*path, name))
    return paths


def _help(command: Any, path: tuple[str, ...]) -> str:
    """`keysafe PATH --help` as a person sees it (rich, 200 columns), from the built command."""
    with CliRunner().isolation(env={"COLUMNS": "200"}) as (out, _, _):
        try:
            command.main(args=[*path, "--help"], prog_name="keysafe")
        except SystemExit as exc:
            assert exc.code in (0, None), path
        return out.getvalue().decode()


def test_every_help_shows_click_metavars_and_no_typer_forms() -> None:
    cli.register([])
    command = typer.main.get_command(cli.app)  # built once: building it is most of the cost
    paths = _command_paths(command)
    assert len(paths) > 40 and ("agent", "add") in paths  # every command was walked
    odd: list[str] = []
    seen = ""
    for path in paths:
        text = _help(command, path)
        assert "Usage: keysafe" in text, (path, text)
        odd += [f"keysafe {' '.join(path)}: {m}" for m in _TYPER_TYPES.findall(text)]
        odd += [f"keysafe {' '.join(path)}: {m}" for m in _TYPER_USAGE_ARGUMENT.findall(text)]
        seen += text
    assert odd == []
    # The click forms are there: a required argument, a value's type, a file, a choice, a range.
    for form in (
        "keysafe agent add [OPTIONS] NAME",
        " FILE ",
        " TEXT ",
        "[stdio|http]",
        "INTEGER RANGE",
    ):
        assert form in seen, form
    # A flag takes no value, so nothing stands between it and its help.
    assert re.search(r"--json\s+Print JSON for scripts", seen)
