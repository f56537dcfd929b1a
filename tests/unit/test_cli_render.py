"""CLI tables for people: ids whole in any terminal width, an agent's words never read as markup."""

from __future__ import annotations

import pytest
from rich.console import Console

from keysafe.cli import render

ID = "apr_79aea84d0593da018aa1543d"
ADDRESS = "0x1111111111111111111111111111111111111111"


def test_table_never_shortens_ids_or_addresses_in_a_narrow_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    narrow = Console(width=50, record=True, highlight=False, soft_wrap=True)  # as render.out
    monkeypatch.setattr(render, "out", narrow)
    render.table("Wallets", ["id", "agent", "address"], [(ID, "bot", ADDRESS)], empty="none")
    text = narrow.export_text()
    assert ID in text and ADDRESS in text  # the other columns are squeezed instead


def test_table_shows_an_agents_markup_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = Console(width=200, record=True, highlight=False, soft_wrap=True)
    monkeypatch.setattr(render, "out", wide)
    summary = "[link=https://evil.example]pay[/link] [bold]now[/bold]"
    render.table("Approvals", ["id", "summary"], [(ID, summary)], empty="none")
    assert summary in wide.export_text()


def test_plain_prints_markup_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=200, record=True, highlight=False, soft_wrap=True)
    monkeypatch.setattr(render, "out", console)
    render.plain(f"Approval {ID}: denied. The agent is told: [red]no[/red]")
    assert "[red]no[/red]" in console.export_text()
