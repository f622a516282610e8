"""Credentials in URLs (`scheme://user:password@host`), in every encoding they travel in.

The separators may be written plainly, JSON-escaped (`https:\\/\\/`, `\\u0040`) or
percent-encoded once or twice (`https%3A%2F%2F`, `%2540`), as in a redirect parameter. A
password may hold `#`, `/`, `?` or `@` unescaped (`postgres://app:p#ss@db`), so the user
information runs to the last `@` of the URL, unless what comes before it is plainly a host and
a path (`https://host:8080/@alice`). A user name alone is kept when it reads as a name (`git@`,
`deploy@`); one with digits, capitals mixed with symbols, or longer than a name is a token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import re2

from runs.engine.target.secrets.matches import named

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_COLON = r"(?::|%(?:25)?3[Aa]|\\u003[Aa])"
_SLASH = r"(?:/|\\/|%(?:25)?2[Ff]|\\u002[Ff])"
_AT = r"(?:@|%(?:25)?40|\\u0040)"
# A URL's scheme, its `://`, and everything up to its last at-sign before a space or a quote
# (a greedy run: RE2 takes the longest that an at-sign follows, still in linear time).
_URL_USERINFO = re2.compile(
    rf"(?i)(?P<scheme>\b[a-z][a-z0-9+.\-]{{0,40}}{_COLON}{_SLASH}{_SLASH})"
    rf"(?P<userinfo>[^\s'\"<>`]*){_AT}",
    _OPTIONS,
)
_HOST_THEN_PATH = re2.compile(r"(?i)^[a-z0-9.\-\[\]]+(?::[0-9]{1,5})?/")
_TEMPLATE = re2.compile(r"^(?:\{[^{}]*\}|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^<>]*>|%s)$")
_PLAIN_NAME = re2.compile(r"^[a-z][a-z._\-]{0,31}$")
# User information in a path component, without a scheme: `mirror/admin:pw@files.example.com`.
_PATH_USERINFO = re2.compile(
    r"(?P<lead>/)(?P<userinfo>[A-Za-z0-9._\-]+:[^\s/@'\"<>`]+)(?P<at>@[A-Za-z0-9\-]+\.[A-Za-z0-9.\-]+)",
    _OPTIONS,
)
_MARKS = ("://", ":\\/\\/", "%3a", "%253a", "\\u003a")
REDACTED_CREDENTIAL = "[redacted]"


def redact_urls(text: str) -> str:
    """The text with the user information of every URL that carries a credential replaced."""
    if "@" in text and ":" in text and "/" in text:
        text = _PATH_USERINFO.sub(_redact_path_userinfo, text)
    lowered = text.lower()
    if not any(mark in lowered for mark in _MARKS):
        return text
    # One pass: the user information runs to the last at-sign, so a URL hidden inside another's
    # is redacted with it.
    return str(_URL_USERINFO.sub(_redact_userinfo, text))


def _redact_path_userinfo(match: Any) -> str:
    g = named(match)
    if REDACTED_CREDENTIAL in str(g["userinfo"]) or _TEMPLATE.search(str(g["userinfo"])):
        return str(g["0"])
    return f"{g['lead']}{REDACTED_CREDENTIAL}{g['at']}"


def _redact_userinfo(match: Any) -> str:
    g = named(match)
    whole, scheme, userinfo = str(g["0"]), str(g["scheme"]), str(g["userinfo"])
    at = whole[len(scheme) + len(userinfo) :]
    plain = _decoded(userinfo)
    if REDACTED_CREDENTIAL in plain or _TEMPLATE.search(plain) is not None:
        return whole  # redacted already, or a template: `{auth}@`, `${USER}@`
    if ":" in plain or "@" in plain:
        if _HOST_THEN_PATH.search(plain) is not None:
            return whole  # an at-sign in the path, after a host and port
        return f"{scheme}{REDACTED_CREDENTIAL}{at}"
    if any(mark in plain for mark in "/?#") or _PLAIN_NAME.search(plain) is not None:
        return whole
    return f"{scheme}{REDACTED_CREDENTIAL}{at}"


def _decoded(userinfo: str) -> str:
    """The user information with JSON escapes and (double) percent-encoding undone."""
    text = userinfo.replace("\\/", "/").replace("\\u003a", ":").replace("\\u003A", ":")
    text = text.replace("\\u0040", "@")
    for _ in range(2):
        text = unquote(text)
    return text
