"""`keysafe notify telegram | webhook add | list | remove | test`: approvals and alerts away
from the desk (docs/notifications.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import inputs, owner, render
from keysafe.cli.home import home, read_vault
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.errors import MalformedRequestError
from keysafe.service import notify, notify_channels, notify_telegram, owner_notify, owner_ops
from keysafe.service.context import open_vault
from keysafe.service.notify_channels import ChannelType, ChannelView

EVENTS_HELP = (
    "Comma-separated events: approval, deny, anomaly, unlock_failure, pause_all, "
    "audit_verify_failure, rotation_due; or all (the default)."
)

notify_app = typer.Typer(
    help="Send approvals and alerts to the owner's Telegram and to signed webhooks. What leaves "
    "the vault is one short notice (agent, category, amount, a shortened recipient, the expiry): "
    "never keys, tokens, credential or data values, full addresses or the agent's own words. "
    "`keysafe serve` sends them; see docs/notifications.md.",
    no_args_is_help=True,
)
webhook_app = typer.Typer(help="Signed JSON webhooks.", no_args_is_help=True)
notify_app.add_typer(webhook_app, name="webhook")


def _read_code() -> str:
    if sys.stdin.isatty():
        return input("Code from the Telegram chat: ")
    return sys.stdin.readline()


def _refuse_while_served(bot: str) -> None:
    """Telegram gives a bot's updates to one listener: while the running server listens to
    this bot, the pairing here would race it for the owner's message.

    Raises:
        MalformedRequestError: this home's server runs with this bot paired.
    """
    h = home()
    if h.serving_url() is None:
        return
    with open_vault(h) as vault:
        served = [c for c in notify_channels.list_channels(vault) if c.type is ChannelType.TELEGRAM]
    if any(c.target == bot for c in served):
        raise MalformedRequestError(
            f"The running `keysafe serve` listens to {bot}, so it would take the message this "
            "pairing waits for; nothing was changed.",
            next_step="run `keysafe notify remove telegram` first (the server lets go of the "
            "bot), then pair again.",
        )


BotTokenFile = Annotated[
    Path,
    typer.Option(
        "--bot-token-file",
        help="File holding the bot's token from @BotFather.",
        exists=True,
        dir_okay=False,
    ),
]
ApproveUpTo = Annotated[
    str | None,
    typer.Option(
        "--approve-up-to",
        help="Telegram may approve payments up to this much of one asset, e.g. 0.1ETH; above "
        "it, in another asset, or a message signature: deny only (approve on the web page or "
        "CLI). Without it Telegram may approve any request but a pairing.",
    ),
]


@notify_app.command("telegram")
def telegram_pair(
    bot_token_file: BotTokenFile,
    approve_up_to: ApproveUpTo = None,
    events: Annotated[str | None, typer.Option("--events", help=EVENTS_HELP)] = None,
    wait: Annotated[
        int, typer.Option("--wait", help="Seconds to wait for your message.", min=5, max=3600)
    ] = 300,
    api_url: Annotated[str | None, typer.Option("--api-url", hidden=True)] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Pair your Telegram chat: send the bot any message, it answers in that chat with a
    one-time code, you type the code here, and only that chat is paired.

    The bot token and the chat are stored sealed in the vault. Approval messages carry Approve
    and Deny buttons; each button works once, only from the paired chat, and only while the
    request is pending and unchanged. Pairing a chat again replaces the earlier one.
    """
    cap = notify_channels.parse_cap(approve_up_to) if approve_up_to is not None else None
    chosen = notify_channels.parse_events(events)
    api = notify_telegram.api_url(api_url)
    with inputs.secret_file(bot_token_file, "bot token") as token:
        bot = notify_telegram.pairing_bot(token, api)
        _refuse_while_served(bot)
        render.note(f"Send any message to {bot} from your Telegram app (waiting {wait} s)…")
        found = notify_telegram.pairing_wait(token, api, wait)
        render.note(
            f"The bot sent a code to the chat of {found.sender or 'someone'}. If that is you, "
            "type the code here:"
        )
        notify_telegram.pairing_confirm(token, api, found, _read_code())
        view = owner.perform(
            owner_notify.SetTelegram(
                token=owner_ops.wire(token),
                chat_id=found.chat_id,
                bot=bot,
                events=[str(e) for e in chosen],
                approve_up_to=cap,
            ),
            passphrase_file,
        )
    if json_out:
        render.as_json(view.model_dump(mode="json"))
        return
    limit = f"up to {cap.describe()}" if cap else "any request but a pairing"
    render.plain(
        f"Paired {bot} with the chat of {found.sender or 'the sender'}: approvals and alerts "
        f"({', '.join(chosen)}) go there; Telegram may approve {limit}."
    )


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="https:// URL (http only to 127.0.0.1/localhost).")],
    events: Annotated[str | None, typer.Option("--events", help=EVENTS_HELP)] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Add a webhook: signed JSON POSTs for the chosen events. Its signing secret (whsec_…)
    is printed once: give it to the receiver, which verifies every delivery's
    keysafe-signature header (docs/notifications.md has the recipe) and dedupes on
    keysafe-delivery."""
    chosen = notify_channels.parse_events(events)
    notify.check_url(url)  # before the passphrase is asked for
    added = owner.perform(
        owner_notify.AddWebhook(url=url, events=[str(e) for e in chosen]), passphrase_file
    )
    if json_out:
        render.as_json(added.model_dump(mode="json"))
        return
    render.plain(
        f"Webhook {added.channel.name} added: {added.channel.target} "
        f"({', '.join(added.channel.events)})."
    )
    render.plain(f"Signing secret, shown once (keep it in the receiver): {added.secret}")


def _row(c: ChannelView) -> tuple[str, str, str, str, str]:
    cap = c.approve_up_to.describe() if c.approve_up_to else ""
    return (c.name, str(c.type), c.target, ", ".join(c.events), cap)


@notify_app.command("list")
def notify_list(json_out: JsonFlag = False) -> None:
    """List the notification channels (no passphrase: nothing secret is shown)."""
    channels = read_vault(notify_channels.list_channels)
    render.listing(
        "Notification channels",
        ["name", "type", "target", "events", "telegram approves up to"],
        [_row(c) for c in channels],
        empty="No channels: add one with `keysafe notify telegram` or "
        "`keysafe notify webhook add`.",
        json_value=[c.model_dump(mode="json") for c in channels],
        json_out=json_out,
    )


@notify_app.command("remove")
def notify_remove(
    name: Annotated[str, typer.Argument(help="The channel's name, from `keysafe notify list`.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Remove a channel; what was queued for it is dropped (audited)."""
    owner.perform(owner_notify.RemoveChannel(name=name), passphrase_file)
    render.plain(f"Channel {name} removed.")


@notify_app.command("test")
def notify_test(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """Queue one harmless message for every channel; the running `keysafe serve` sends it."""
    done = owner.perform(owner_notify.SendTest(), passphrase_file)
    if json_out:
        render.as_json(done.model_dump())
        return
    render.plain(
        f"A test message is queued for {done.channels} channel(s); `keysafe serve` sends it "
        "(once unlocked after a start)."
    )
