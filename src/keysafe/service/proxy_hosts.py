"""Where a proxied call goes, and where its credential may go with it (service/proxy.py).

Rules this module enforces:
- Only http(s) URLs with a host, without user:password@, and in the canonical form the policy
  judges (policy/urls.py): the URL that is judged is the URL that is sent.
- The secret goes only to the credential's own hosts (`host[:port]`, `*.domain` wildcards), and
  in clear (plain http) only to loopback hosts.
- A redirect target keeps no copy of the secret: a query-attached key is taken out, and a URL
  that holds it anywhere else is not followed.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from keysafe.errors import MalformedRequestError
from keysafe.hosts import is_loopback
from keysafe.policy import urls
from keysafe.service.record_meta import credential_meta
from keysafe.vault.records import RecordInfo

logger = logging.getLogger(__name__)


def url_target(url: str) -> tuple[str, str, int]:
    """The scheme, host and port `url` reaches.

    Raises:
        MalformedRequestError: not http(s) with a host, user info in it, or a bad port.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise MalformedRequestError(
            "Only http(s) URLs with a host can be called.", next_step="pass a full https:// URL."
        )
    if parts.username or parts.password:
        raise MalformedRequestError(
            "URLs with user:password@ are refused.", next_step="the credential is attached for you."
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise MalformedRequestError(
            "The URL's port is not a number.", next_step="fix the URL."
        ) from None
    return scheme, parts.hostname.lower(), port


def canonical_url(url: str) -> str:
    """`url` as the policy judges it, and as it is then sent.

    Raises:
        MalformedRequestError: it cannot be judged as written (policy/urls.py).
    """
    try:
        return urls.canonical(url)
    except urls.BadUrl as exc:
        raise MalformedRequestError(
            f"The URL cannot be judged as it is written: {exc}. Nothing was sent.",
            next_step="send the plain path (no encoded '/', '\\' or ';'); keysafe sends exactly "
            "the URL its policy judged.",
        ) from None


def absolute_url(info: RecordInfo, url: str) -> str:
    """A bare path ("/v1/models") goes to the credential's first host: how the local proxy's
    per-credential routes reach it without knowing the hosts themselves.

    Raises:
        MalformedRequestError: the first host is a wildcard, so a bare path has no host.
    """
    if not url.startswith("/") or url.startswith("//"):
        return url
    host = credential_meta(info).hosts[0]
    if host.startswith("*."):
        raise MalformedRequestError(
            f"Credential '{info.name}' names a wildcard host ({host}), so a bare path has no host.",
            next_step="pass a full https:// URL on one of its hosts.",
        )
    scheme = "http" if is_loopback(host.rsplit(":", 1)[0]) else "https"
    return f"{scheme}://{host}{url}"


def may_carry(info: RecordInfo, scheme: str, host: str, port: int) -> bool:
    """May the secret go to scheme://host:port? Only to the credential's own hosts, and in clear
    only on loopback."""
    if scheme == "http" and not is_loopback(host):
        return False
    default = 443 if scheme == "https" else 80
    for entry in credential_meta(info).hosts:
        name, _, p = entry.partition(":")
        want_port = int(p) if p else default
        if want_port != port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:]) and host != name[2:]):
            return True
    return False


def attach_secret(info: RecordInfo, secret: str, url: str, headers: dict[str, str]) -> str:
    """Put the secret where the credential says (a header, Basic auth, or the query): `headers`
    gains it in place, and the returned URL carries it for a query credential."""
    attach = credential_meta(info).attach
    kind, name, template = (
        attach.get("type"),
        attach.get("name", ""),
        attach.get("template", "{secret}"),
    )
    if kind == "header":
        headers[name] = template.replace("{secret}", secret)
    elif kind == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()
    elif kind == "query":
        parts = urlsplit(url)
        extra = urlencode({name: secret})
        url = urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
    return url


def without_secret(url: str, forms: list[str]) -> str | None:
    """A redirect target with the secret taken out (a server that keeps the query string would
    otherwise carry a query-attached key to the next host); None when the secret sits elsewhere
    in the URL and cannot be taken out: the redirect is then not followed."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not any(f in v or f in k for f in forms)
    ]
    clean = urlunsplit(parts._replace(query=urlencode(query)))
    return None if any(f in clean for f in forms) else clean
