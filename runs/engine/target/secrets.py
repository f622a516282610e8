"""What is secret in a target: the one rule every reader of target bytes applies.

Tools, git, the citation checker and the exports all ask here; none keeps a list of its own.
Three questions, three functions:

- `is_secret_name(rel)`: a path that is never read, whatever it holds (`.env` in any case,
  `.envrc`, `.netrc`, package-manager token files, key files, anything under `.git/`).
- `has_private_key(data)`: contents holding a private key in any armour (PEM, OpenSSH, PGP,
  SSH2, PuTTY, age); such a file is refused whole.
- `redact(text)`: what may pass on from any other text: private-key blocks and the
  credentials in URLs (`scheme://user:token@host`) replaced by a marker.

Names are compared after Unicode compatibility folding and case folding, with trailing dots
and spaces removed, so `.ENV`, `.Env.local` and `.env` written with a full-width e (U+FF45)
are all `.env`. The patterns are RE2 (linear time), so hostile text cannot make the rule
itself slow.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from pathlib import PurePosixPath
from typing import Any

import re2

# File names (the last path component), as lower-case globs.
SECRET_NAMES = (
    # environment files
    ".env",
    ".env.*",
    ".env-*",
    ".env_*",
    "*.env",
    ".envrc",
    # key material
    "*.pem",
    "*.key",
    "*.p8",
    "*.p12",
    "*.pfx",
    "*.ppk",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "secring.*",
    # credential and token files
    ".netrc",
    "_netrc",
    ".pgpass",
    ".my.cnf",
    ".git-credentials",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pypirc",
    "pip.conf",
    "pip.ini",
    ".htpasswd",
    ".vault-token",
    ".s3cfg",
    ".boto",
    ".dockercfg",
    ".terraformrc",
    "terraform.rc",
    "*.tfstate",
    "*.tfstate.backup",
    "credentials*.json",
    "service-account*.json",
    "secrets.*",
)
# Files known by their folder: a path ending with these components (lower case).
SECRET_PATHS = (
    (".gem", "credentials"),
    (".cargo", "credentials"),
    (".cargo", "credentials.toml"),
    (".docker", "config.json"),
    (".composer", "auth.json"),
    ("composer", "auth.json"),
    (".m2", "settings.xml"),
    (".m2", "settings-security.xml"),
    ("gh", "hosts.yml"),
    (".bundle", "config"),
)
# Whole folders: nothing under them is read (`.git` holds remote URLs with tokens, and objects).
SECRET_DIRS = frozenset({".git", ".ssh", ".gnupg", ".aws", ".azure", ".docker", ".kube"})
# Examples and public halves are fine to read.
SAFE_NAMES = (".env.example", ".env.sample", ".env.template", ".env.dist", "*.pub")
# Kept for callers that look for the PEM marker itself; `has_private_key` is the rule.
PRIVATE_KEY_MARK = b"PRIVATE KEY-----"

REDACTED_KEY = "[private key redacted]"
REDACTED_CREDENTIAL = "[redacted]"
# A bare user name in a URL is kept (`git@`, `deploy@`); one this long is a token.
TOKEN_USER_CHARS = 20

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# The start of a private key in any armour; case-insensitive, dashes loosely counted.
_KEY_START = (
    r"-{4,5} ?BEGIN[ A-Z0-9]{0,40}PRIVATE KEY"
    r"|PuTTY-User-Key-File-[0-9]+:"
    r"|AGE-SECRET-KEY-1[0-9A-Z]{20}"
)
_KEY_MARK = re2.compile(f"(?i){_KEY_START}".encode(), _OPTIONS)
# The same starts for `git grep -i -E` (POSIX ERE reads this pattern alike), so the git reader
# finds the files that hold a key without reading each one itself.
KEY_START_ERE = _KEY_START
_KEY_WORDS = (b"private key", b"putty-user-key-file", b"age-secret-key-1")
# A whole block: from its start to its end marker, or to the end of the text when cut off.
_KEY_BLOCK = re2.compile(
    r"(?is)-{4,5} ?BEGIN[ A-Z0-9]{0,40}PRIVATE KEY.*?"
    r"(?:-{4,5} ?END[ A-Z0-9]{0,40}PRIVATE KEY[ A-Z]{0,10}-{0,5}|\z)"
    r"|(?s)PuTTY-User-Key-File-[0-9]+:.*?(?:Private-MAC: ?[0-9A-Fa-f]*|\z)"
    r"|(?i)AGE-SECRET-KEY-1[0-9A-Z]+",
    _OPTIONS,
)
# scheme://userinfo@ : the userinfo runs to the last @ before the path, so an unescaped @ in
# a password cannot leave its tail behind.
_URL_USERINFO = re2.compile(
    r"(?i)(?P<scheme>\b[a-z][a-z0-9+.\-]{0,40}://)(?P<userinfo>[^\s/?#@'\"<>`]*(?:@[^\s/?#@'\"<>`]*)*)@",
    _OPTIONS,
)


def fold_name(name: str) -> str:
    """A path component as the rule compares it: NFKC, case-folded, no trailing dots/spaces."""
    folded = unicodedata.normalize("NFKC", name).casefold().rstrip(" .")
    return folded or name


def is_secret_name(relative: str) -> bool:
    """True when the path (relative to the target, `/`-separated) must never be read."""
    parts = [fold_name(part) for part in PurePosixPath(relative).parts if part not in ("", ".")]
    if not parts:
        return False
    if any(part in SECRET_DIRS for part in parts[:-1]) or parts[-1] == ".git":
        return True
    name = parts[-1]
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in SAFE_NAMES):
        return False
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_NAMES):
        return True
    return any(tuple(parts[-len(tail) :]) == tail for tail in SECRET_PATHS)


def has_private_key(data: bytes | str) -> bool:
    """True when the contents hold the start of a private key in any armour."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    lowered = raw.lower()
    # Plain substring searches first: every armour names itself, and most files name none.
    if not any(word in lowered for word in _KEY_WORDS):
        return False
    return _KEY_MARK.search(raw) is not None


def redact(text: str) -> str:
    """The text with private-key blocks and URL credentials replaced by markers."""
    if not text:
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: RE2 reads UTF-8, so mark them first
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if has_private_key(text):
        text = _KEY_BLOCK.sub(REDACTED_KEY, text)
    if "://" in text:
        text = _URL_USERINFO.sub(_redact_userinfo, text)
    return text


def _redact_userinfo(match: Any) -> str:
    userinfo = match.group("userinfo")
    if ":" in userinfo or "@" in userinfo or len(userinfo) >= TOKEN_USER_CHARS:
        return f"{match.group('scheme')}{REDACTED_CREDENTIAL}@"
    return str(match.group(0))
