"""URL rules: `https://api.github.com/repos/**` matches scheme, host, port and path.

`*` matches within one path segment, `**` across segments. A request URL is judged and sent in
one canonical form, made here with httpx's parser (the one that sends it): lower-case scheme and
host, escapes of unreserved characters decoded, repeated slashes collapsed, dot segments
resolved; encoded `/`, `\\` or `;` (and raw `\\` or `;`) in the path are refused. So `//admin`,
`/%61dmin`, `/admin;/x` and `/repos/../admin` cannot reach past an `/admin/**` deny, and what the
policy judged is exactly what goes out.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# Separators a server may honour where the policy would not: encoded slash, backslash and
# semicolon (path parameters: `/admin;/x` is /admin to many servers), and the raw ones.
_AMBIGUOUS = re.compile(r"%2[fF]|%5[cC]|%3[bB]|[\\;]")


class BadUrl(ValueError):
    pass


def _path(raw: str) -> str:
    """The canonical form of a path (no query): see the module docstring."""
    if _AMBIGUOUS.search(raw):
        raise BadUrl("encoded slashes or backslashes, or ';', in the path")

    def unescape(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else m.group(0).upper()

    path = _ESCAPE.sub(unescape, raw or "/")
    out: list[str] = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".", ""):
            out.append(seg)
    trailing = "/" if path.endswith("/") and out else ""
    return "/" + "/".join(out) + trailing


def canonical(url: str) -> str:
    """The one form of a request URL that is judged and sent.

    Raises:
        BadUrl: not an http(s) URL with a host, carries user:password@, or its path is ambiguous.
    """
    scheme, host, port, path, query = _split(url)
    name = f"[{host}]" if ":" in host else host
    netloc = name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _split(url: str) -> tuple[str, str, int, str, str]:
    try:
        u = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise BadUrl("not a URL") from None
    scheme = u.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not u.host:
        raise BadUrl("only http(s) URLs with a host")
    if u.userinfo:
        raise BadUrl("URLs with user:password@ are refused")
    if u.port is not None and not 0 < u.port < 65536:
        raise BadUrl("port out of range")
    raw = u.raw_path.decode("ascii")
    path, _, query = raw.partition("?")
    return scheme, u.host.lower(), u.port or _DEFAULT_PORTS[scheme], _path(path), query


def normalise(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, canonical path) of a request URL."""
    scheme, host, port, path, _ = _split(url)
    return scheme, host, port, path


def _pattern_parts(pattern: str) -> tuple[str, str, int, str]:
    """A rule's URL pattern, split as a request URL is (the wildcards ride as control bytes)."""
    try:
        parts = urlsplit(pattern.strip())
        port = parts.port
    except ValueError:
        raise BadUrl("not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BadUrl("only http(s) URLs with a host")
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], _path(parts.path)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> tuple[str, str, int, re.Pattern[str]]:
    scheme, host, port, path = _pattern_parts(pattern.replace("**", "\x00").replace("*", "\x01"))
    host = host.replace("\x01", "*")
    rx = ""
    for ch in re.split(r"(\x00|\x01)", path):
        if ch == "\x00":
            rx += ".*"
        elif ch == "\x01":
            rx += "[^/]*"
        else:
            rx += re.escape(ch)
    return scheme, host, port, re.compile(rx + r"\Z")


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return pattern == host


def url_matches(pattern: str, url: str) -> bool:
    """Raises BadUrl when the request URL cannot be judged (the rule then denies)."""
    scheme, host, port, path = normalise(url)
    p_scheme, p_host, p_port, p_path = _compile(pattern)
    return (
        scheme == p_scheme
        and _host_matches(p_host, host)
        and port == p_port
        and p_path.match(path) is not None
    )
