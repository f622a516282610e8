"""Request-level guards every page shares: query strings are checked once, here, before any
view reads them, and templates get the Content-Security-Policy nonce."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

BAD_QUERY = (
    "The address has a character that cannot be used in it (a NUL, another control character "
    "or bytes that are not UTF-8); remove it and try again."
)


def bad_query(query_string: str) -> bool:
    """Whether any name or value of the query decodes to something no page can take.

    The server hands the query over as Latin-1 text (one character per byte), so it is
    turned back into those bytes before the percent escapes are undone."""
    raw = query_string.encode("latin-1", "replace")
    for pair in raw.split(b"&"):
        try:
            text = unquote_to_bytes(pair.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return True
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
            return True
    return False


class CleanQueryMiddleware:
    """A query parameter with a NUL, a control character or broken UTF-8 is a 400 with a
    sentence, for every page, so no view (or PostgreSQL, which refuses NUL) meets one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if bad_query(request.META.get("QUERY_STRING", "")):
            return HttpResponseBadRequest(BAD_QUERY, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def csp_nonce(request: HttpRequest) -> dict[str, Any]:
    """The page's nonce under the name django-htmx's `{% htmx_script %}` looks for."""
    return {"csp_nonce": getattr(request, "csp_nonce", None)}
