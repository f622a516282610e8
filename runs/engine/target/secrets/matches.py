"""Named groups of an RE2 match, read fast.

The binding rebuilds its table of group names at every lookup by name (tens of microseconds
each), which made redaction take seconds on a text built with many candidates. Each pattern's
table is read once here and the groups are then fetched by number.
"""

from __future__ import annotations

from typing import Any

_TABLES: dict[Any, dict[str, int]] = {}


def named(match: Any) -> dict[str, Any]:
    """The match's named groups (None where a group took no part), and `0`: the whole match."""
    table = _table(match.re)
    groups: dict[str, Any] = {name: match[index] for name, index in table.items()}
    groups["0"] = match[0]
    return groups


def offset(match: Any, name: str) -> tuple[int, int]:
    """Where the named group lies within the whole match."""
    index = _table(match.re)[name]
    return match.start(index) - match.start(), match.end(index) - match.start()


def _table(regexp: Any) -> dict[str, int]:
    table = _TABLES.get(regexp)
    if table is None:
        table = _TABLES[regexp] = dict(regexp.groupindex)
    return table
