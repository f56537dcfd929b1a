"""URL rules: `https://api.github.com/repos/**` matches scheme, host, port and path.

`*` matches within one path segment, `**` across segments. The request URL is normalised first
(lower-case scheme and host, default port, dot segments resolved, percent-encoded slashes and
dots refused) so `/repos/../admin` cannot sneak past a `/repos/**` rule.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class BadUrl(ValueError):
    pass


def normalise(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise BadUrl("not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BadUrl("only http(s) URLs with a host")
    if parts.username or parts.password:
        raise BadUrl("URLs with user:password@ are refused")
    path = parts.path or "/"
    if re.search(r"%2[fF]|%2[eE]|%5[cC]|\\", path):
        raise BadUrl("encoded slashes, dots or backslashes in the path")
    out: list[str] = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], "/" + "/".join(out)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> tuple[str, str, int, re.Pattern[str]]:
    scheme, host, port, path = normalise(pattern.replace("**", "\x00").replace("*", "\x01"))
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
