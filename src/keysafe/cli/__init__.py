"""The `keysafe` command line: parse, call one service function, render. Never decides."""

from keysafe.cli.app import main

__all__ = ["main"]
