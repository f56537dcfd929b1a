"""The server's notifier: sends the outbox to its channels and listens to the paired Telegram
chat, on a thread and event loop of its own (python-telegram-bot is async; uvicorn's loop is not
slowed by a slow webhook receiver).

Thin: every decision is a service call (service/notify.py, service/notify_telegram.py); this
module only moves bytes. Rules it keeps:
- At start, leases a killed predecessor held are released, so a send cut by kill -9 goes out
  again at once, with its delivery id unchanged.
- Channels are opened (their secrets read) only while the vault is unlocked. They are kept in
  this process's memory afterwards, so alerts still go out while the vault is locked (a failed
  unlock is exactly when the owner wants one); after a restart, nothing is sent before the
  first unlock, and notifications wait in the outbox.
- Error texts are scrubbed of the bot token before they are logged or stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Final

import httpx
from telegram import Bot

from keysafe.errors import KeysafeError
from keysafe.notify import telegram, webhook
from keysafe.service import notify, notify_channels, notify_outbox, notify_telegram, rotation_due
from keysafe.service.notify_channels import ChannelType, OpenChannel
from keysafe.service.notify_outbox import Claimed
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

IDLE_S: Final = 0.5  # between rounds when there is no Telegram long poll to wait in
POLL_S: Final = 1  # Telegram long-poll length: how soon a button press is seen
ROTATION_CHECK_S: Final = 600.0


class Notifier:
    """One per `keysafe serve`; `start` runs it until `stop` is set."""

    def __init__(
        self, vault: Vault, *, telegram_api: str, stop: threading.Event, release_leases: bool
    ) -> None:
        self._vault = vault
        # Only a server alone on its database ends the leases it finds: another server's are
        # sends under way (they lapse by themselves if that server died).
        self._release_leases = release_leases
        self._api = telegram_api
        self._stop = stop
        self._channels: dict[str, OpenChannel] = {}
        self._bot: Bot | None = None
        self._bot_token = ""
        self._offset: int | None = None
        self._rotation_checked = 0.0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # a bug here must not take the server down; it is logged
            logger.exception("the notifier stopped")

    async def _main(self) -> None:
        released = (
            await asyncio.to_thread(notify_outbox.release_claims, self._vault)
            if self._release_leases
            else 0
        )
        if released:
            logger.info("notifier: %d notification(s) cut by the last stop go out again", released)
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
            while not self._stop.is_set():
                try:
                    await self._round(http)
                except Exception as exc:  # one bad round must not end notifications for good
                    logger.warning("notifier round failed: %s", self._scrub(repr(exc))[:300])
                    await asyncio.sleep(2)
        if self._bot is not None:
            await self._bot.shutdown()

    async def _round(self, http: httpx.AsyncClient) -> None:
        await self._refresh()
        await self._send_due(http)
        await self._check_rotation()
        if self._bot is not None and self._telegram() is not None:
            await self._listen(self._bot)
        else:
            await asyncio.sleep(IDLE_S)

    def _scrub(self, text: str) -> str:
        return telegram.scrub(text, self._bot_token)

    def _telegram(self) -> OpenChannel | None:
        return self._channels.get(notify_channels.TELEGRAM)

    async def _refresh(self) -> None:
        if not self._vault.is_unlocked:
            return  # keep what was opened while unlocked
        try:
            opened = await asyncio.to_thread(notify_channels.open_channels, self._vault)
        except KeysafeError as exc:  # locked meanwhile, or a channel edited outside keysafe
            logger.warning("notifier: channels not opened: %s", exc)
            return
        self._channels = {c.view.name: c for c in opened}
        tg = self._telegram()
        token = tg.secret.get_secret_value() if tg is not None else ""
        if token != self._bot_token:
            if self._bot is not None:
                await self._bot.shutdown()
            self._bot, self._bot_token, self._offset = None, token, None
            if token:
                bot = telegram.make_bot(token, self._api)
                await bot.initialize()
                self._bot = bot

    async def _send_due(self, http: httpx.AsyncClient) -> None:
        if not self._channels:
            return
        due = await asyncio.to_thread(
            lambda: notify_outbox.claim(self._vault, channels=set(self._channels))
        )
        await asyncio.gather(*(self._send_one(http, item) for item in due))

    async def _send_one(self, http: httpx.AsyncClient, item: Claimed) -> None:
        channel = self._channels.get(item.channel)
        try:
            if channel is None:
                raise RuntimeError("the channel was removed")
            if channel.view.type is ChannelType.WEBHOOK:
                await self._post(http, channel, item)
            else:
                await self._telegram_send(channel, item)
        except Exception as exc:  # any failure of one delivery is that delivery's, retried
            error = self._scrub(f"{type(exc).__name__}: {exc}")
            await asyncio.to_thread(notify_outbox.mark_failed, self._vault, item, error)
            return
        await asyncio.to_thread(notify_outbox.mark_sent, self._vault, item.delivery_id)

    async def _post(self, http: httpx.AsyncClient, channel: OpenChannel, item: Claimed) -> None:
        body = webhook.body(item.delivery_id, item.notice, item.created_at, time.time())
        secret = channel.secret.get_secret_value()
        r = await http.post(
            channel.view.target,
            content=body,
            headers={
                "content-type": "application/json",
                webhook.SIGNATURE_HEADER: webhook.signature_header(secret, body, int(time.time())),
                webhook.DELIVERY_HEADER: item.delivery_id,
                webhook.EVENT_HEADER: str(item.notice.event),
            },
        )
        if not 200 <= r.status_code < 300:
            raise RuntimeError(f"the receiver answered HTTP {r.status_code}")

    async def _telegram_send(self, channel: OpenChannel, item: Claimed) -> None:
        if self._bot is None or channel.chat_id is None:
            raise RuntimeError("the Telegram bot is not ready")
        out = await asyncio.to_thread(
            notify_telegram.compose, self._vault, item.notice, channel.view.approve_up_to
        )
        await telegram.send(self._bot, channel.chat_id, out.text, out.buttons)

    async def _listen(self, bot: Bot) -> None:
        items, self._offset = await telegram.fetch(bot, self._offset, POLL_S)
        tg = self._telegram()
        paired = tg.chat_id if tg is not None else None
        cap = tg.view.approve_up_to if tg is not None else None
        for item in items:
            if item.kind == "button" and item.callback_id is not None:
                pressed = await asyncio.to_thread(
                    notify_telegram.press, self._vault, item.chat_id, paired, item.text, cap
                )
                await telegram.answer(bot, item.callback_id, pressed.answer)
                if pressed.edit is not None and item.message_id is not None:
                    # The notice stays readable; its buttons go, with the outcome below it.
                    text = f"{item.message_text}\n\n{pressed.edit}".strip()
                    await telegram.edit(bot, item.chat_id, item.message_id, text)
            elif item.kind == "message" and item.chat_id == paired:
                await telegram.send(
                    bot,
                    item.chat_id,
                    "keysafe only sends approvals and alerts here; decide with the buttons "
                    "under each approval.",
                )

    async def _check_rotation(self) -> None:
        """Every ROTATION_CHECK_S: the rotation_due alert, and the outbox's old rows pruned."""
        now = time.monotonic()
        if self._rotation_checked and now - self._rotation_checked < ROTATION_CHECK_S:
            return
        self._rotation_checked = now
        await asyncio.to_thread(notify_outbox.prune, self._vault)
        try:
            _, due = await asyncio.to_thread(rotation_due.due, self._vault)
        except KeysafeError as exc:
            logger.warning("notifier: rotation check failed: %s", exc)
            return
        what = ", ".join(sorted({f"{d.what} of {d.agent}" for d in due}))[:200]
        await asyncio.to_thread(notify.note_rotation_due, self._vault, len(due), what)
