"""The owner's operations on notification channels (service/notify.py), as `owner_ops.Op`s:
run in the owner's CLI or sent to the owner's own server (service/owner_ops.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from keysafe.service import notify, notify_channels
from keysafe.service.notify_channels import Cap, ChannelView, WebhookAdded
from keysafe.service.owner_ops import Op, Removal, WireSecret, unwired
from keysafe.vault.vault import Vault


class AddWebhook(Op[WebhookAdded]):
    """A webhook endpoint; its signing secret comes back once."""

    kind: Literal["notify.webhook.add"] = "notify.webhook.add"
    url: str
    events: list[str]

    def run(self, vault: Vault) -> WebhookAdded:
        return notify_channels.add_webhook(
            vault, self.url, notify_channels.parse_events(",".join(self.events))
        )


class SetTelegram(Op[ChannelView]):
    """The Telegram chat the owner just paired (the CLI proved the chat with a code)."""

    kind: Literal["notify.telegram.set"] = "notify.telegram.set"
    token: WireSecret
    chat_id: int
    bot: str
    events: list[str]
    approve_up_to: Cap | None = None

    def run(self, vault: Vault) -> ChannelView:
        with unwired(self.token, "bot token") as token:
            return notify_channels.set_telegram(
                vault,
                token,
                self.chat_id,
                self.bot,
                notify_channels.parse_events(",".join(self.events)),
                self.approve_up_to,
            )


class RemoveChannel(Removal):
    kind: Literal["notify.remove"] = "notify.remove"
    remover = notify_channels.remove_channel


class TestQueued(BaseModel):
    channels: int


class SendTest(Op[TestQueued]):
    """One harmless message to every channel."""

    kind: Literal["notify.test"] = "notify.test"

    def run(self, vault: Vault) -> TestQueued:
        return TestQueued(channels=notify.send_test(vault))
