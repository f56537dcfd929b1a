"""Sending a proxied HTTP call (service/proxy.py) and following its redirects, with the
credential attached only on hops to the hosts it names.

Apart from service/proxy.py, which gates the call and scrubs the answer, because this is the one
place the credential leaves the vault: what goes out on each hop is decided here and nowhere else.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx

from keysafe.errors import UpstreamUnavailableError
from keysafe.service.proxy_call import Call
from keysafe.service.proxy_client import finish_hop
from keysafe.service.proxy_hosts import attach_secret, may_carry, url_target, without_secret
from keysafe.service.record_meta import credential_meta
from keysafe.vault.records import RecordInfo

MAX_REDIRECTS: Final = 5
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "cookie",
        # keysafe chooses the encodings (ACCEPT_ENCODING): an answer in one it cannot undo would
        # reach the agent without its secrets scrubbed.
        "accept-encoding",
    }
)
# keysafe asks for what httpx undoes without optional packages: the scrubber must see the plain
# body (proxy.py refuses an answer in any other encoding).
ACCEPT_ENCODING: Final = "gzip, deflate"


def _agent_headers(info: RecordInfo, headers: dict[str, str]) -> dict[str, str]:
    """The agent's headers that are passed on: no hop-by-hop one, and not the credential's own."""
    # The agent cannot set (or smuggle a second copy of) the header the credential goes in.
    attach = credential_meta(info).attach
    own = str(attach.get("name", "")).lower() if attach.get("type") == "header" else ""
    return {
        k: v
        for k, v in headers.items()
        if k.lower() not in _HOP_BY_HOP and not (k.lower() == own and own)
    }


def follow(
    client: httpx.Client, call: Call, secret: str, forms: list[str]
) -> tuple[httpx.Response, str, int]:
    """Send the call and follow its redirects: the final answer (its body not read yet), its URL
    and how many hops led there. The credential goes only on hops to its own hosts. On a
    failure the last answer's connection is let go (never reused half-read)."""
    base = _agent_headers(call.info, call.headers)
    current, method, body, hops = call.url, call.method, call.body, 0
    # This call's cookies: what one hop set goes to the next hop it matches (as a browser
    # would), and dies with the call; the shared client's own jar stays empty.
    jar = httpx.Cookies()
    r: httpx.Response | None = None
    try:
        while True:
            scheme, host, port = url_target(current)
            headers = dict(base) | {"Accept-Encoding": ACCEPT_ENCODING}
            target = current
            if may_carry(call.info, scheme, host, port):
                target = attach_secret(call.info, secret, current, headers)
            request = client.build_request(
                method, target, headers=headers, content=body, cookies=jar
            )
            r = client.send(request, stream=True)
            jar.extract_cookies(r)
            following = (
                without_secret(urljoin(current, r.headers["location"]), forms)
                if r.is_redirect and hops < MAX_REDIRECTS and "location" in r.headers
                else None
            )
            if following is None:
                return r, current, hops
            finish_hop(r)
            hops += 1
            current = following
            if r.status_code in (301, 302, 303) and method != "HEAD":
                method, body = "GET", None
    except BaseException as exc:
        if r is not None:
            r.close()
        if isinstance(exc, httpx.HTTPError):
            raise UpstreamUnavailableError(
                f"The call to {urlsplit(current).hostname} failed ({type(exc).__name__}).",
                next_step="check the service is reachable, then retry.",
            ) from None
        raise
