"""What is secret in a target: the one rule every reader of target bytes applies.

Tools, git, the citation checker and the exports all ask here; none keeps a list of its own.
"""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

SECRET_NAMES = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    "credentials*.json",
    "*.kdbx",
    ".git-credentials",
    "secrets.*",
    "*.keystore",
    "*.jks",
)
SAFE_NAMES = (".env.example", ".env.sample", ".env.template", "*.pub")
SECRET_DIRS = frozenset({".ssh", ".gnupg", ".aws", ".docker"})
PRIVATE_KEY_MARK = b"PRIVATE KEY-----"


def is_secret_name(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    if any(part in SECRET_DIRS for part in parts[:-1]):
        return True
    name = parts[-1] if parts else ""
    if any(fnmatch.fnmatch(name, pattern) for pattern in SAFE_NAMES):
        return False
    return any(fnmatch.fnmatch(name, pattern) for pattern in SECRET_NAMES)
