"""`python -m keysafe`: the same CLI as the `keysafe` command."""

from keysafe.cli import main

main()
