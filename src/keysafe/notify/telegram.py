"""The Telegram Bot API through python-telegram-bot: the few calls keysafe makes, typed.

Rules this module enforces:
- The bot token is only ever in the `Bot` (it is part of every API URL): no function here logs
  or returns it, and `scrub` takes it out of an error's text before anyone sees that.
- Updates are reduced to `Incoming`: the chat id, a button's data or a message's text, and the
  sender's display name; nothing else of Telegram's model leaves this module.
- The API's address defaults to Telegram's; tests point it at a local stand-in speaking the same
  API (`KEYSAFE_TELEGRAM_API_URL`).

All calls are async (python-telegram-bot's API): the server runs them on its notifier's own
event loop, the pairing CLI with `asyncio.run`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

__all__ = [
    "API_URL_ENV",
    "Incoming",
    "TelegramError",
    "answer",
    "api_url",
    "bot_name",
    "edit",
    "fetch",
    "make_bot",
    "scrub",
    "send",
]

API_URL_ENV: Final = "KEYSAFE_TELEGRAM_API_URL"
DEFAULT_API: Final = "https://api.telegram.org"


def api_url(override: str | None = None) -> str:
    """The Bot API's base address: `override`, else KEYSAFE_TELEGRAM_API_URL, else Telegram's."""
    return (override or os.environ.get(API_URL_ENV) or DEFAULT_API).rstrip("/")


def make_bot(token: str, api: str) -> Bot:
    """A bot for `token` at `api` (use it as `async with bot:`)."""
    return Bot(
        token,
        base_url=f"{api}/bot",
        request=HTTPXRequest(connection_pool_size=4, read_timeout=15, write_timeout=15),
        get_updates_request=HTTPXRequest(read_timeout=30),
    )


def scrub(text: str, token: str) -> str:
    """`text` with the token taken out (an error's text may quote the URL)."""
    return text.replace(token, "<bot token>") if token else text


@dataclass(frozen=True, slots=True)
class Incoming:
    """One update, reduced to what keysafe reads."""

    update_id: int
    chat_id: int
    kind: Literal["message", "button"]
    text: str  # a message's text, or a button's callback data
    sender: str  # display name ("Alice (@alice)"), for the owner to recognise
    callback_id: str | None = None
    message_id: int | None = None  # the message the button sits under
    message_text: str = ""  # that message's text (keysafe's own notice)


def _incoming(u: Update) -> Incoming | None:
    """The update as keysafe reads it, or None for what it ignores: anything outside a private
    chat (in a group the bot's code and buttons are seen and pressed by every member), and a
    press by anyone but that chat's own user."""
    if u.callback_query is not None:
        q = u.callback_query
        msg = q.message
        if msg is None or msg.chat.type != "private" or q.from_user.id != msg.chat.id:
            return None
        who = q.from_user
        name = who.full_name + (f" (@{who.username})" if who.username else "")
        text = getattr(msg, "text", None) or ""  # an inaccessible message has no text
        return Incoming(
            u.update_id, msg.chat.id, "button", q.data or "", name, q.id, msg.message_id, text
        )
    if u.message is not None:
        m = u.message
        if m.chat.type != "private" or m.from_user is None or m.from_user.id != m.chat.id:
            return None
        who_m = m.from_user
        name = (
            ""
            if who_m is None
            else who_m.full_name + (f" (@{who_m.username})" if who_m.username else "")
        )
        return Incoming(u.update_id, m.chat.id, "message", m.text or "", name)
    return None


async def fetch(bot: Bot, offset: int | None, timeout: int) -> tuple[list[Incoming], int | None]:
    """Updates after `offset` (long-polled up to `timeout` s) and the next offset to ask for."""
    updates = await bot.get_updates(
        offset=offset, timeout=timeout, allowed_updates=["message", "callback_query"]
    )
    # A negative offset counts from the end (it skips what came before); the next call asks
    # from the first update after those, or for everything new when there were none.
    nxt = offset if offset is None or offset >= 0 else None
    out: list[Incoming] = []
    for u in updates:
        nxt = max(nxt or 0, u.update_id + 1)
        item = _incoming(u)
        if item is not None:
            out.append(item)
    return out, nxt


async def bot_name(bot: Bot) -> str:
    """The bot's @username (getMe): proves the token works."""
    me = await bot.get_me()
    return f"@{me.username}" if me.username else me.first_name


async def send(bot: Bot, chat_id: int, text: str, buttons: Sequence[tuple[str, str]] = ()) -> int:
    """Send `text` with inline buttons (label, callback data); returns the message id."""
    markup = (
        InlineKeyboardMarkup(
            [[InlineKeyboardButton(label, callback_data=data) for label, data in buttons]]
        )
        if buttons
        else None
    )
    msg = await bot.send_message(chat_id, text, reply_markup=markup)
    return msg.message_id


async def answer(bot: Bot, callback_id: str, text: str) -> None:
    """Answer a button press (the owner sees `text` as a pop-up)."""
    await bot.answer_callback_query(callback_id, text=text[:200], show_alert=True)


async def edit(bot: Bot, chat_id: int, message_id: int, text: str) -> None:
    """Replace a message's text; its buttons go (a decided request has nothing to press)."""
    await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
