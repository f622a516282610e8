"""Which paths are secret files, and how such a path is shown.

A secret file is never read, whatever it holds, and its name is not shown either: a listing
gives `[secret file]` in its place (its folder kept), so the rest of the listing still reads.

Names are compared after Unicode compatibility folding and case folding, with trailing dots
and spaces removed, so `.ENV`, `.Env.local` and `.env` written with a full-width e (U+FF45)
are all `.env`. The lists follow the file rules of gitleaks and detect-secrets' filters,
and the credential files of the common tools (cloud CLIs, package managers, shells).
"""

from __future__ import annotations

import fnmatch
import unicodedata
from pathlib import PurePosixPath

from runs.engine.target.secrets.assignments import redact_component
from runs.engine.target.secrets.urls import redact_urls

# File names (the last path component), as lower-case globs.
SECRET_NAMES = (
    # environment files: `.env`, `.env1`, `.env.production`, `prod.env`, Flask's `.flaskenv`
    ".env",
    ".env[0-9]*",
    ".env.*",
    ".env-*",
    ".env_*",
    "*.env",
    ".envrc",
    ".flaskenv",
    # key material
    "*.pem",
    "*.key",
    "*.p8",
    "*.p12",
    "*.pfx",
    "*.ppk",
    "*.jks",
    "*.jceks",
    "*.keystore",
    "*.keytab",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "secring.*",
    "*.minisign_key",
    "minisign.key",
    # WireGuard interfaces (`wg0.conf`) hold the interface's private key
    "wg[0-9]*.conf",
    # credential and token files
    "credentials",
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
    "*.tfvars",
    "*.tfvars.json",
    "kubeconfig",
    "kubeconfig.*",
    "*.kubeconfig",
    "rclone.conf",
    "sftp-config.json",
    "*credentials*.json",
    "service-account*.json",
    # `secret.yml`, `secrets.json`: configuration files named for what they hold
    *(
        f"{stem}.{ext}"
        for stem in ("secret", "secrets")
        for ext in (
            "yml",
            "yaml",
            "json",
            "toml",
            "ini",
            "cfg",
            "conf",
            "env",
            "txt",
            "properties",
            "xml",
        )
    ),
    # shell and database client histories hold pasted passwords and exported tokens
    ".*_history",
    ".histfile",
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
    (".config", "hub"),
    ("hub", "config"),
    ("rclone", "rclone.conf"),
    (".bundle", "config"),
)
# Whole folders: nothing under them is read (`.git` holds remote URLs with tokens, and objects;
# `.envs` is cookiecutter-django's folder of environment files; `gcloud` holds token databases).
SECRET_DIRS = frozenset(
    {".git", ".ssh", ".gnupg", ".aws", ".azure", ".docker", ".kube", ".envs", "gcloud"}
)
# Examples and public halves are fine to read.
SAFE_NAMES = (
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    "*.example",
    "*.sample",
    "*.pub",
)
# What a listing shows in place of a secret file's name.
SECRET_NAME_SHOWN = "[secret file]"  # noqa: S105 (a placeholder)


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


def redact_name(relative: str) -> str:
    """The path with a credential any component carries replaced: `password=...`, `token:...`
    (any separator an assignment takes) or a URL's user information, percent-encoded too."""
    if not any(mark in relative for mark in "=:@%"):
        return relative
    parts = redact_urls(relative).split("/")
    return "/".join(redact_component(part) for part in parts)


def shown_name(relative: str) -> str:
    """The path as a listing may show it: a secret file's name replaced by a placeholder, and
    a credential in any other name redacted (`redact_name`)."""
    if not is_secret_name(relative):
        return redact_name(relative)
    folder = redact_name(relative.rstrip("/").rpartition("/")[0])
    return f"{folder}/{SECRET_NAME_SHOWN}" if folder else SECRET_NAME_SHOWN
