"""A local stand-in for the Telegram Bot API, for tests: a real HTTP server speaking the Bot API's
shapes, so python-telegram-bot talks to it exactly as it talks to api.telegram.org.

    with TelegramStandin(TOKEN) as tg:          # tg.url → KEYSAFE_TELEGRAM_API_URL
        tg.user_says(OWNER, "hi")               # a user's message (an update)
        msg = tg.wait_sent(OWNER, "pairing code")
        tg.press(OWNER, msg.message_id, "Approve")   # a button press (a callback_query update)
        tg.answers                              # what answerCallbackQuery said

Methods: getMe, getUpdates (long poll, `offset` confirms, negative `offset` counts from the end),
sendMessage (with `reply_markup` inline keyboards), answerCallbackQuery, editMessageText,
editMessageReplyMarkup. A wrong token gets 401 as from Telegram. `GET /_view/<chat id>` renders
the chat as HTML, inline buttons and all (`?message=ID`: one message), for the docs'
screenshot.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_ID = 7000001
BOT_USERNAME = "keysafe_test_bot"


@dataclass
class Sent:
    """A message in a chat (the bot's, or a user's)."""

    chat_id: int
    message_id: int
    text: str
    from_bot: bool
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (label, callback data)
    edits: int = 0

    def button(self, label: str) -> str:
        for text, data in self.buttons:
            if text == label:
                return data
        raise AssertionError(f"no button {label!r} under message {self.message_id}: {self.buttons}")


@dataclass
class Answer:
    callback_query_id: str
    text: str


def _user(chat_id: int, name: str) -> dict[str, Any]:
    return {"id": chat_id, "is_bot": False, "first_name": name, "username": name.lower()}


class TelegramStandin:
    def __init__(self, token: str) -> None:
        self.token = token
        self._cond = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 100
        self.messages: list[Sent] = []
        self.answers: list[Answer] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> TelegramStandin:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # -- test controls -----------------------------------------------------------------------

    def user_says(self, chat_id: int, text: str, *, name: str = "Owner") -> None:
        with self._cond:
            mid = self._new_message_id()
            self.messages.append(Sent(chat_id, mid, text, from_bot=False))
            self._push(
                {
                    "message": {
                        "message_id": mid,
                        "date": int(time.time()),
                        "text": text,
                        "chat": {"id": chat_id, "type": "private", "first_name": name},
                        "from": _user(chat_id, name),
                    }
                }
            )

    def press(self, chat_id: int, message_id: int, data: str, *, name: str = "Owner") -> str:
        """Press a button whose callback data is `data` under `message_id`, as `chat_id`."""
        with self._cond:
            msg = next(m for m in self.messages if m.message_id == message_id)
            qid = f"cbq{self._next_update}"
            self._push(
                {
                    "callback_query": {
                        "id": qid,
                        "from": _user(chat_id, name),
                        "chat_instance": "ci",
                        "data": data,
                        "message": self._message_json(msg)
                        | {"chat": {"id": chat_id, "type": "private"}},
                    }
                }
            )
            return qid

    def sent_to(self, chat_id: int) -> list[Sent]:
        with self._cond:
            return [m for m in self.messages if m.chat_id == chat_id and m.from_bot]

    def wait_for(self, what: Callable[[], Any], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                found = what()
                if found:
                    return found
                self._cond.wait(0.1)
        raise AssertionError("the stand-in waited in vain")

    def wait_sent(self, chat_id: int, contains: str, timeout: float = 20) -> Sent:
        def find() -> Sent | None:
            return next((m for m in self.sent_to(chat_id) if contains in m.text), None)

        found: Sent = self.wait_for(find, timeout)
        return found

    def wait_answer(self, qid: str, timeout: float = 20) -> str:
        def find() -> str | None:
            return next((a.text for a in self.answers if a.callback_query_id == qid), None)

        text: str = self.wait_for(find, timeout)
        return text

    def wait_polling(self, count: int = 1, timeout: float = 20) -> None:
        """Until `count` long polls (getUpdates with a timeout) have been asked for."""
        self.wait_for(
            lambda: (
                sum(1 for m, p in self.calls if m == "getUpdates" and int(p.get("timeout", 0)))
                >= count
            ),
            timeout,
        )

    def everything_sent(self) -> str:
        """Every text and button the bot sent or edited, for canary greps."""
        with self._cond:
            return json.dumps([(m.text, m.buttons) for m in self.messages if m.from_bot]) + (
                json.dumps([(a.text) for a in self.answers])
            )

    # -- the Bot API -------------------------------------------------------------------------

    def _new_message_id(self) -> int:
        self._next_message += 1
        return self._next_message

    def _push(self, body: dict[str, Any]) -> None:
        self._updates.append({"update_id": self._next_update} | body)
        self._next_update += 1
        self._cond.notify_all()

    def _message_json(self, m: Sent) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": m.message_id,
            "date": int(time.time()),
            "text": m.text,
            "chat": {"id": m.chat_id, "type": "private"},
            "from": {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "keysafe",
                "username": BOT_USERNAME,
            }
            if m.from_bot
            else _user(m.chat_id, "Owner"),
        }
        if m.buttons:
            out["reply_markup"] = {
                "inline_keyboard": [[{"text": t, "callback_data": d} for t, d in m.buttons]]
            }
        return out

    def _call(self, method: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self.calls.append((method, p))
        if method == "getMe":
            return 200, {
                "ok": True,
                "result": {
                    "id": BOT_ID,
                    "is_bot": True,
                    "first_name": "keysafe",
                    "username": BOT_USERNAME,
                    "can_join_groups": False,
                    "can_read_all_group_messages": False,
                    "supports_inline_queries": False,
                },
            }
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._get_updates(p)}
        with self._cond:
            if method == "sendMessage":
                buttons = _buttons(p.get("reply_markup"))
                m = Sent(int(p["chat_id"]), self._new_message_id(), str(p["text"]), True, buttons)
                self.messages.append(m)
                self._cond.notify_all()
                return 200, {"ok": True, "result": self._message_json(m)}
            if method == "answerCallbackQuery":
                self.answers.append(Answer(str(p["callback_query_id"]), str(p.get("text", ""))))
                self._cond.notify_all()
                return 200, {"ok": True, "result": True}
            if method in ("editMessageText", "editMessageReplyMarkup"):
                m = next(
                    x
                    for x in self.messages
                    if x.message_id == int(p["message_id"]) and x.chat_id == int(p["chat_id"])
                )
                if method == "editMessageText":
                    m.text = str(p["text"])
                m.buttons = _buttons(p.get("reply_markup"))
                m.edits += 1
                self._cond.notify_all()
                return 200, {"ok": True, "result": self._message_json(m)}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    def _get_updates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        with self._cond:
            if offset < 0:
                return list(self._updates[offset:])
            if offset:  # confirms (drops) every update before it
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            return list(self._updates)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any] | str, ctype: str) -> None:
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                # The client may have given up (a long poll cut by its shutdown).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path.startswith("/_view/"):
                    where, _, only = self.path.partition("?message=")
                    chat = int(where.rsplit("/", 1)[1])
                    page = standin.view(chat, int(only) if only else None)
                    self._reply(200, page, "text/html; charset=utf-8")
                    return
                self._api(b"")

            def do_POST(self) -> None:
                self._api(self.rfile.read(int(self.headers.get("content-length") or 0)))

            def _api(self, raw: bytes) -> None:
                prefix = f"/bot{standin.token}/"
                if not self.path.startswith(prefix):
                    self._reply(
                        401,
                        {"ok": False, "error_code": 401, "description": "Unauthorized"},
                        "application/json",
                    )
                    return
                method = self.path[len(prefix) :].split("?")[0]
                status, body = standin._call(method, _params(raw, self.headers.get("content-type")))
                self._reply(status, body, "application/json")

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    # -- the HTML view -------------------------------------------------------------------------

    def view(self, chat_id: int, message_id: int | None = None) -> str:
        """The chat as HTML (with `message_id`, that one message only)."""
        with self._cond:
            items = [
                m
                for m in self.messages
                if m.chat_id == chat_id and message_id in (None, m.message_id)
            ]
        bubbles = []
        for m in items:
            text = html.escape(m.text).replace("\n", "<br>")
            keys = "".join(f"<span class=key>{html.escape(t)}</span>" for t, _ in m.buttons)
            side = "bot" if m.from_bot else "me"
            bubbles.append(
                f"<div class='row {side}'><div class=bubble>{text}</div>"
                + (f"<div class=keys>{keys}</div>" if keys else "")
                + "</div>"
            )
        return _PAGE.replace("{bubbles}", "\n".join(bubbles))


_PAGE = """<!doctype html><html><head><meta charset=utf-8><title>Telegram stand-in</title>
<style>
body{margin:0;font:15px/1.4 -apple-system,"Segoe UI",Roboto,sans-serif;background:#c9d8b6}
header{background:#517da2;color:#fff;padding:12px 16px;font-weight:600}
main{padding:16px;display:flex;flex-direction:column;gap:10px;max-width:520px}
.row{display:flex;flex-direction:column;max-width:420px}
.row.me{align-self:flex-end}
.bubble{background:#fff;border-radius:12px;padding:8px 12px;box-shadow:0 1px 1px #0002}
.me .bubble{background:#effdde}
.keys{display:flex;gap:6px;margin-top:4px}
.key{flex:1;text-align:center;background:#ffffffaa;border-radius:8px;padding:7px;color:#2b5278;
font-weight:600}
</style></head><body><header>keysafe bot</header><main id=chat>
{bubbles}
</main></body></html>"""


def _buttons(markup: Any) -> list[tuple[str, str]]:
    if not markup:
        return []
    if isinstance(markup, str):
        markup = json.loads(markup)
    return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]


def _params(raw: bytes, ctype: str | None) -> dict[str, Any]:
    """python-telegram-bot sends form fields whose non-string values are JSON text."""
    if not raw:
        return {}
    if ctype and ctype.startswith("application/json"):
        parsed: dict[str, Any] = json.loads(raw)
        return parsed
    return {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
