"""The CLI imports only the module of the command it runs (keysafe/cli/app.py COMMANDS); this
checks that table against what the modules really define, so no command can go missing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import typer.main

from keysafe.cli import app as cli


def _defining_module(obj: Any) -> str:
    for name, module in sys.modules.items():
        if name.startswith("keysafe.cli.") and any(v is obj for v in vars(module).values()):
            return name.removeprefix("keysafe.cli.")
    raise AssertionError(f"no CLI module holds {obj!r}")


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
        defined[group.name] = {_defining_module(sub)} | {
            c.callback.__module__.removeprefix("keysafe.cli.")
            for c in sub.registered_commands
            if c.callback is not None
        }
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
