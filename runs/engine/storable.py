"""Text on its way into PostgreSQL: model and target text made storable in one place.

PostgreSQL refuses a NUL in `text` and in `jsonb`, and a lone UTF-16 surrogate in `jsonb`;
Python's JSON decoder lets both through from a model's stream (`"\\u0000"`, `"\\ud800"`). A
model sending either would make every write of its events fail, and the step would pause and
resume forever. Events, checkpoints and a step's outcome pass through `storable` first.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def storable(value: Any) -> Any:
    """The value with every string in it storable (NULs and lone surrogates replaced)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {
            storable_text(k) if isinstance(k, str) else k: storable(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def storable_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        text = "".join(REPLACEMENT if "\ud800" <= char <= "\udfff" else char for char in text)
    return text
