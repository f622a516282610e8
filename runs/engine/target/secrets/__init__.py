"""What is secret in a target: the one rule every reader of target bytes applies.

Tools, git, the citation checker, the kept lines and the exports all ask here; none keeps a
list of its own. Three questions, three functions:

- `is_secret_name(rel)`: a path that is never read, whatever it holds (`names.py`); where a
  listing shows such a path, `shown_name(rel)` puts `[secret file]` in place of its name, and
  `redact_name(rel)` hides a credential any other name carries (`db_password=...sql`).
- `readable_contents(data)`: a file's bytes as a reader may show them (`keys.py`): a key in
  ordinary code has its material replaced line for line, a file that is essentially a key (or
  whose key's extent is uncertain) gives None and is refused whole. `has_private_key(data)`
  tells whether contents hold a key at all.
- `redact(text)`: what may pass on from any other text. The value is replaced, not the line,
  so the code around a secret still reads and line numbers stay true:
  private keys (`keys.py`), URL credentials in every encoding (`urls.py`), values assigned to
  secret-like names (`assignments.py`, detect-secrets' keyword list) and tokens of known shape
  (`tokens.py`, detect-secrets' detectors and a few gitleaks rules).

Every pattern is RE2 (linear time), so hostile text cannot make the rule itself slow.
"""

from __future__ import annotations

from runs.engine.target.secrets.assignments import redact_assignments
from runs.engine.target.secrets.keys import (
    KEY_START_ERE,
    REDACTED_KEY,
    has_private_key,
    readable_contents,
    redact_keys,
)
from runs.engine.target.secrets.names import (
    SECRET_NAME_SHOWN,
    fold_name,
    is_secret_name,
    redact_name,
    shown_name,
)
from runs.engine.target.secrets.tokens import redact_tokens
from runs.engine.target.secrets.urls import REDACTED_CREDENTIAL, redact_urls

__all__ = [
    "KEY_START_ERE",
    "REDACTED_CREDENTIAL",
    "REDACTED_KEY",
    "SECRET_NAME_SHOWN",
    "fold_name",
    "has_private_key",
    "is_secret_name",
    "readable_contents",
    "redact",
    "redact_name",
    "shown_name",
]


def redact(text: str) -> str:
    """The text with private keys, URL credentials, assigned secrets and tokens replaced."""
    if not text:
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: RE2 reads UTF-8, so mark them first
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    # Keys first (a key's body would otherwise be read as tokens), then URLs (whose password
    # may look like an assignment), then names with values, then bare tokens.
    text = redact_keys(text)
    text = redact_urls(text)
    text = redact_assignments(text)
    return redact_tokens(text)
