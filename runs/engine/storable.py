"""What storage and the pane can carry, and which write errors are only an outage.

Model output and file contents may hold any code point. PostgreSQL refuses a NUL in text and
in jsonb, and an unpaired surrogate (a JSON `\\ud800` escape decodes to one) cannot even be
encoded as UTF-8; raw control characters reach the pane's HTML and socket frames. Every value
the engine writes (events, checkpoints, a step's output, error and status note) passes through
`storable` first, so no byte from a model or a file can break a write.

Replacements are visible, never silent deletions: a C0 control character (other than tab,
newline and carriage return) becomes its Unicode Control Picture (NUL -> "␀" U+2400,
ESC -> "␛" U+241B), DEL becomes "␡" (U+2421), and a C1 control or an unpaired surrogate
becomes U+FFFD, the replacement character.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import InterfaceError, OperationalError

_UNCARRIABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block mirrors C0 in order
    if code == 0x7F:
        return "\u2421"
    return REPLACEMENT


def clean_text(text: str) -> str:
    """`text` with every character storage or the pane cannot carry replaced visibly."""
    if _UNCARRIABLE.search(text) is None:
        return text  # the common case costs one scan and no copy
    return _UNCARRIABLE.sub(_picture, text)


def storable(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with every string cleaned, keys too."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def is_outage(exc: BaseException) -> bool:
    """True when a failed write may succeed unchanged later (the database is away, restarting,
    or a transaction lost a race); False when the data itself was refused and retrying the
    same write can only fail again (a DataError, an IntegrityError, an encoding error)."""
    return isinstance(exc, OperationalError | InterfaceError)


def write_refusal(exc: BaseException) -> str:
    """A write error as the end of a sentence a person reads on the failed step."""
    detail = clean_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return f"{type(exc).__name__}: {detail[:200]}" if detail else type(exc).__name__
