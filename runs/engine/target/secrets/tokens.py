"""Tokens known by their shape (cloud keys, forge and chat tokens, payment keys, JWTs), from the
maintained detectors of detect-secrets (Yelp), compiled for RE2 so they run in linear time.

detect-secrets writes its patterns for Python's `re`; a few end in a lookaround that RE2 does
not have (`(?!\\w)`, `(?<=\\W)`). Those are dropped here: a token is matched where it starts and
then extended over the token characters that follow, which is what the lookahead asked for. A
pattern RE2 still cannot read is left out and named by `skipped_patterns()`, so a new release
that adds one shows up in the tests rather than silently.

A match is replaced whole, or only its captured value when the pattern captures one (the AWS
secret key after `aws...key = '`), so the code around it stays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2
from detect_secrets.plugins import (
    aws,
    azure_storage_key,
    cloudant,
    discord,
    github_token,
    gitlab_token,
    ibm_cloud_iam,
    ibm_cos_hmac,
    jwt,
    mailchimp,
    npm,
    openai,
    pypi_token,
    sendgrid,
    slack,
    softlayer,
    square_oauth,
    stripe,
    telegram_token,
    twilio,
)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# The detectors taken; left out: the keyword and entropy detectors (keywords are
# `assignments.py`; entropy alone marks every hash), public IP addresses (not a credential),
# Artifactory (its bare `AP[0-9A-F]...` pattern matches ordinary capitalised words) and basic
# auth (`urls.py` reads every encoding of it).
_PLUGINS = (
    aws.AWSKeyDetector,
    azure_storage_key.AzureStorageKeyDetector,
    cloudant.CloudantDetector,
    discord.DiscordBotTokenDetector,
    github_token.GitHubTokenDetector,
    gitlab_token.GitLabTokenDetector,
    ibm_cloud_iam.IbmCloudIamDetector,
    ibm_cos_hmac.IbmCosHmacDetector,
    jwt.JwtTokenDetector,
    mailchimp.MailchimpDetector,
    npm.NpmDetector,
    openai.OpenAIDetector,
    pypi_token.PypiTokenDetector,
    sendgrid.SendGridDetector,
    slack.SlackDetector,
    softlayer.SoftlayerDetector,
    square_oauth.SquareOAuthDetector,
    stripe.StripeDetector,
    telegram_token.TelegramBotTokenDetector,
    twilio.TwilioKeyDetector,
)
# Shapes detect-secrets 1.5 does not know, from gitleaks' published rules.
EXTRA_PATTERNS = (
    r"github_pat_[0-9A-Za-z_]{22,}",  # GitHub fine-grained token
    r"AIza[0-9A-Za-z\-_]{35}",  # Google API key
    r"ya29\.[0-9A-Za-z\-_]{20,}",  # Google OAuth access token
    r"(?:sk|rk|pk)_(?:test|live)_[0-9A-Za-z]{16,}",  # Stripe, test keys too
    r"sk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_\-]{32,}",  # OpenAI and Anthropic keys
    r"xox[abposre]-[0-9A-Za-z\-]{10,}",  # Slack
    r"hv[sb]\.[0-9A-Za-z_\-]{24,}",  # HashiCorp Vault
    r"npm_[0-9A-Za-z]{36}",  # npm
    r"dop_v1_[0-9a-f]{64}",  # DigitalOcean
    r"SharedAccessSignature sr=[^\s\"';]+",  # Azure SAS
    r"(?i:(?:Bearer|Basic|Token)\s+)(?P<value>[A-Za-z0-9._~+/\-]{16,}=*)",  # auth headers
    r"[\"']0x[0-9a-fA-F]{64}[\"']",  # a quoted 32-byte hex value: an Ethereum private key
)
# Token characters a match is extended over (the lookaheads RE2 lacks asked for this much).
_TOKEN_TAIL = r"[A-Za-z0-9_\-.+/=]*"  # noqa: S105 (a pattern)
_LOOKAROUND = re2.compile(r"\(\?<?[=!](?:[^()]|\([^()]*\))*\)")
# RE2 repeats at most 1000 times; the GitLab agent token asks for up to 1024.
_REPEAT = re2.compile(r"\{(\d+),(\d{4,})\}")
REDACTED_TOKEN = "[redacted]"  # noqa: S105 (the marker)


@dataclass(frozen=True, kw_only=True)
class _Detector:
    regex: Any
    source: str


def _for_re2(pattern: str) -> str:
    """A detect-secrets pattern with the lookarounds RE2 lacks dropped and repeats capped."""
    pattern = _LOOKAROUND.sub("", pattern)
    return _REPEAT.sub(lambda m: "{" + m.group(1) + ",1000}", pattern)


def _compile() -> tuple[list[_Detector], list[str]]:
    detectors: list[_Detector] = []
    skipped: list[str] = []
    sources = [(p, plugin.__name__) for plugin in _PLUGINS for p in plugin.denylist]
    for pattern, source in sources:
        flags = "(?i)" if pattern.flags & 2 else ""  # re.IGNORECASE
        try:
            regex = re2.compile(f"{flags}(?:{_for_re2(pattern.pattern)}){_TOKEN_TAIL}", _OPTIONS)
        except re2.error:
            skipped.append(f"{source}: {pattern.pattern[:80]}")
            continue
        detectors.append(_Detector(regex=regex, source=source))
    for extra in EXTRA_PATTERNS:
        regex = re2.compile(f"(?:{extra}){_TOKEN_TAIL}", _OPTIONS)
        detectors.append(_Detector(regex=regex, source="gitleaks"))
    return detectors, skipped


_DETECTORS, _SKIPPED = _compile()


def skipped_patterns() -> list[str]:
    """The detect-secrets patterns RE2 could not read (none with the pinned release)."""
    return list(_SKIPPED)


def detector_count() -> int:
    return len(_DETECTORS)


def redact_tokens(text: str) -> str:
    """The text with every token of a known shape replaced."""
    for detector in _DETECTORS:
        if detector.regex.search(text) is not None:
            text = detector.regex.sub(_replacement, text)
    return text


@functools.lru_cache(maxsize=128)
def _value_group(regexp: Any) -> int | None:
    """The number of the pattern's `value` group (looked up once: the binding is slow)."""
    return dict(regexp.groupindex).get("value")


def _replacement(match: Any) -> str:
    whole = str(match[0])
    if REDACTED_TOKEN in whole:
        return whole
    group: int | None = _value_group(match.re)
    if group is None and match.re.groups >= 1 and len(match[1] or "") >= 16:
        group = 1  # the pattern captured the secret itself (aws ... key = '<here>')
    if group is not None and match[group]:
        start, end = match.start(group) - match.start(), match.end(group) - match.start()
        return whole[:start] + REDACTED_TOKEN + whole[end:]
    return REDACTED_TOKEN
