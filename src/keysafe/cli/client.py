"""The owner CLI talking to a running `keysafe serve`: KEYSAFE_URL when set, else the server that
holds this home's serve lock; never a guessed address.

The owner session is cached 0600 in KEYSAFE_HOME for a few minutes, so a burst of commands asks
for the passphrase once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from keysafe.cli import inputs
from keysafe.cli.home import home
from keysafe.cli.unlocking import unlock_with_kms
from keysafe.client import error_from_answer
from keysafe.errors import MalformedRequestError, NotAuthenticatedError
from keysafe.service import vault_admin
from keysafe.service.context import Home, open_vault
from keysafe.service.vault_admin import KmsKind

DEFAULT_URL = "http://127.0.0.1:8420"
CACHE_NAME = "owner-session.json"
CACHE_SECONDS = 300


def server_url() -> str | None:
    """KEYSAFE_URL when set; else the server running on this home (it writes its URL into the
    serve lock it holds); else None. The default address is never guessed at: whatever listens
    on 127.0.0.1:8420 when this home's server does not would be sent the owner's passphrase."""
    url = os.environ.get("KEYSAFE_URL") or home().serving_url()
    return url.rstrip("/") if url else None


def no_server() -> MalformedRequestError:
    """The error for an owner command that needs the running server when there is none."""
    url = server_url()
    if url is None:
        return MalformedRequestError(
            "No keysafe server is running on this home.",
            next_step="start it with `keysafe serve`, or set KEYSAFE_URL to where it runs.",
        )
    return MalformedRequestError(
        f"No keysafe server answers at {url}.",
        next_step="start it with `keysafe serve`, or set KEYSAFE_URL to where it runs.",
    )


def server_live() -> bool:
    """Whether a server answers where owner commands would go (`server_url`)."""
    url = server_url()
    return url is not None and server_up(url)


def server_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _cache(home: Home) -> Path:
    return home.path / CACHE_NAME


# This process's own sessions, by server URL: an owner's CLI with no home folder of its own
# (driving a vault on another machine with --vault-url) keeps its session here rather than
# logging in again, an Argon2id check on the server, for every step of a ceremony.
_SESSIONS: dict[str, tuple[str, float]] = {}


def _cached(home: Home, url: str) -> str | None:
    mine = _SESSIONS.get(url)
    if mine is not None and mine[1] > time.time():
        return mine[0]
    try:
        data = json.loads(_cache(home).read_text())
    except (OSError, ValueError):
        return None
    if data.get("url") != url or data.get("until", 0) < time.time():
        return None
    return str(data.get("session")) or None


def _kms_login_body(home: Home, url: str) -> dict[str, str] | None:
    """For a vault a KMS wraps (it has no passphrase): unlock this home's vault through the KMS
    here, and answer the server's one-time challenge with the owner's proof. None for a
    passphrase vault (or no vault here: the passphrase is asked, as for a remote server)."""
    if not home.exists():
        return None
    with open_vault(home) as vault:
        if vault_admin.key_provider(vault).kind is KmsKind.LOCAL:
            return None
        r = httpx.get(f"{url}/v1/login-challenge", timeout=30)
        if r.status_code != 200:
            raise error_from_answer(r.json(), r.status_code)
        challenge = str(r.json()["challenge"])
        unlock_with_kms(vault, None)
        return {"challenge": challenge, "proof": vault_admin.owner_proof(vault, challenge)}


def login(home: Home, url: str, passphrase_file: Path | None) -> str:
    body = _kms_login_body(home, url)
    if body is None:
        with inputs.passphrase(passphrase_file) as secret:
            body = {"passphrase": bytes(secret.reveal()).decode("utf-8", "replace")}
    r = httpx.post(f"{url}/v1/owner/login", json=body, timeout=30)
    del body
    if r.status_code != 200:
        raise error_from_answer(r.json(), r.status_code)
    session = str(r.json()["session"])
    _SESSIONS[url] = (session, time.time() + CACHE_SECONDS)
    if home.path.is_dir():
        fd = os.open(_cache(home), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url, "session": session, "until": time.time() + CACHE_SECONDS}, f)
    return session


def server_unlocked(url: str) -> bool | None:
    """Is the server at `url` unlocked (True), locked (False), or not answering (None)?"""
    try:
        r = httpx.get(f"{url}/v1/health", timeout=2)
        return bool(r.json().get("unlocked")) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def owner_call(
    home: Home,
    method: str,
    path: str,
    *,
    passphrase_file: Path | None,
    json_body: Any = None,
    url: str | None = None,
) -> Any:
    url = url or server_url()
    if url is None:
        raise no_server()
    session = _cached(home, url) or login(home, url, passphrase_file)
    for attempt in (1, 2):
        r = httpx.request(
            method,
            f"{url}{path}",
            json=json_body,
            timeout=70,
            headers={"authorization": f"Bearer {session}"},
        )
        if r.status_code == 401 and attempt == 1:
            _cache(home).unlink(missing_ok=True)
            _SESSIONS.pop(url, None)
            session = login(home, url, passphrase_file)
            continue
        try:
            body = r.json()
        except ValueError:
            raise MalformedRequestError(
                f"The server at {url} did not answer JSON.", next_step="check KEYSAFE_URL."
            ) from None
        if r.status_code >= 400:
            raise error_from_answer(body, r.status_code)
        return body
    raise NotAuthenticatedError(
        "The server refused the owner session.", next_step="run `keysafe unlock`."
    )
