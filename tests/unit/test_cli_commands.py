"""The CLI imports only the module of the command it runs (keysafe/cli/app.py COMMANDS); this
checks that table against what the modules really define, so no command can go missing."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import typer.main
from typer.testing import CliRunner

from keysafe.cli import app as cli


def _defining_module(obj: Any) -> str:
    for name, module in sys.modules.items():
        if name.startswith("keysafe.cli.") and any(v is obj for v in vars(module).values()):
            return name.removeprefix("keysafe.cli.")
    raise AssertionError(f"no CLI module holds {obj!r}")


def _modules_of(group: typer.Typer) -> set[str]:
    """The modules that add to `group`: where it is defined, its commands, its nested groups."""
    out = {_defining_module(group)} | {
        c.callback.__module__.removeprefix("keysafe.cli.")
        for c in group.registered_commands
        if c.callback is not None
    }
    for nested in group.registered_groups:
        assert nested.typer_instance is not None
        out |= _modules_of(nested.typer_instance)
    return out


def test_the_command_table_names_every_command_and_the_modules_that_add_to_it() -> None:
    cli.register([])  # no command named: every module
    defined: dict[str, set[str]] = {}
    for info in cli.app.registered_commands:
        assert info.callback is not None, info
        name = info.name or info.callback.__name__.replace("_", "-")  # typer's own default
        defined[name] = {info.callback.__module__.removeprefix("keysafe.cli.")}
    for group in cli.app.registered_groups:
        assert group.name is not None
        sub = group.typer_instance
        assert sub is not None
        defined[group.name] = _modules_of(sub)
    assert defined == {name: set(modules) for name, modules in cli.COMMANDS.items()}
    assert set(typer.main.get_command(cli.app).commands) == set(cli.COMMANDS)  # type: ignore[attr-defined]


def test_a_command_imports_only_its_own_module() -> None:
    probe = (
        "import sys; from keysafe.cli import app; app.register(['agent', 'list']); "
        "print(sorted(m for m in sys.modules if m.startswith('keysafe.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "keysafe.cli.agent_cmds" in loaded
    for other in ("record_cmds", "server_cmds", "surface_cmds", "demo_cmd", "backup_cmds"):
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
    for form in ("keysafe agent add [OPTIONS] NAME", " FILE ", " TEXT ", "[stdio|http]",
                 "INTEGER RANGE"):  # fmt: skip
        assert form in seen, form
    # A flag takes no value, so nothing stands between it and its help.
    assert re.search(r"--json\s+Print JSON for scripts", seen)
