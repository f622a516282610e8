"""Private keys in every form they are written in: a file that holds one is refused whole, and
any other text has the key replaced line for line (so line numbers stay true).

Forms: PEM in any armour and case (PKCS#1, PKCS#8, encrypted, EC, OpenSSH, PGP, SSH2), PuTTY,
age, a whole PEM base64-encoded once more (a Kubernetes Secret's `tls.key`), a headerless DER
body (PKCS#1, PKCS#8, SEC1, Ed25519), a JSON Web Key's private members, .NET's
`<RSAKeyValue>`, minisign secret keys and a WireGuard `PrivateKey =`.
"""

from __future__ import annotations

from typing import Any

import re2

from runs.engine.target.secrets.matches import named

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_B64 = "[A-Za-z0-9+/]"
# " PRIVATE KEY" base64-encoded at each of the three byte alignments, with the characters that
# depend on the bytes before it left off: found in a PEM that was base64-encoded again.
_B64_PRIVATE_KEY = "IFBSSVZBVEUgS0VZ|BQUklWQVRFIEtF|gUFJJVkFURSBL"
# The first bytes of DER private keys in base64, for bodies written without their header.
_DER_STARTS = (
    f"MII{_B64}{{3}}IBADANBgkqhkiG9w0BAQEFAAS"  # PKCS#8 RSA
    f"|MII{_B64}{{3}}IBAAK[BC][Ag]"  # PKCS#1 RSA
    f"|MII{_B64}{{4,6}}BgkqhkiG9w0BBQ[0-3]w"  # encrypted PKCS#8 (PBES2)
    f"|MI{_B64}{{2}}AgEAMB[AM]GByqGSM49AgEG"  # PKCS#8 EC
    "|MC4CAQAwBQYDK2V[uw]BCIEI"  # PKCS#8 Ed25519 and X25519
    "|MHcCAQEEI|MIGkAgEBBDA|MIHcAgEBBEI"  # SEC1 EC (P-256, P-384, P-521)
)
# The start of a private key in any form. The same text serves RE2 and `git grep -i -E` (POSIX
# ERE reads it alike), so the git reader finds the files that hold a key without reading each.
KEY_START_ERE = "|".join(
    (
        "-{4,5} ?BEGIN[ A-Z0-9]{0,40}PRIVATE KEY",
        "PuTTY-User-Key-File-[0-9]+:",
        "AGE-SECRET-KEY-1[0-9A-Z]{20}",
        f"LS0tLS1CRUdJTi{_B64}{{0,40}}({_B64_PRIVATE_KEY})",
        f"({_DER_STARTS}){_B64}{{16}}",
        '"d"[[:space:]]*:[[:space:]]*"[A-Za-z0-9_-]{20,}"',
        f"<(D|DP|DQ|InverseQ)>{_B64}{{16}}",
        "minisign (encrypted )?secret key",
        f"RWRTY0Iy{_B64}{{40}}|RWQAAEIy{_B64}{{40}}",
        f"PrivateKey[[:space:]]*=[[:space:]]*{_B64}{{43}}=",
    )
)
_KEY_MARK = re2.compile(f"(?i)(?:{KEY_START_ERE})".encode(), _OPTIONS)
# Whole keys, from their start to their end (or to the end of the text when cut off). A base64
# body runs on over following lines, each perhaps led by a diff's `+`, `-` or space.
_BODY_LINES = f"(?:\\n[+\\- \\t]?{_B64}{{16,}}=*)*"
_KEY_BLOCK = re2.compile(
    r"(?is:-{4,5} ?BEGIN[ A-Z0-9]{0,40}PRIVATE KEY.*?"
    r"(?:-{4,5} ?END[ A-Z0-9]{0,40}PRIVATE KEY[ A-Z]{0,10}-{0,5}|\z))"
    r"|(?s:PuTTY-User-Key-File-[0-9]+:.*?(?:Private-MAC: ?[0-9A-Fa-f]*|\z))"
    r"|(?i:AGE-SECRET-KEY-1[0-9A-Z]+)"
    f"|LS0tLS1CRUdJTi{_B64}{{0,40}}(?:{_B64_PRIVATE_KEY}){_B64}*=*"
    f"|(?:{_DER_STARTS}){_B64}*=*{_BODY_LINES}"
    f"|(?:RWRTY0Iy|RWQAAEIy){_B64}*=*",
    _OPTIONS,
)
# Members of a key that are secret: the private ones of a JWK, of an RSAKeyValue, WireGuard's.
# A value may be split over string concatenations (`"d": "ab" +\n "cd"`), all of it secret.
_JWK_PRIVATE = re2.compile(
    r'(?P<head>"(?:d|p|q|dp|dq|qi|k|oth)"\s*:\s*)'
    r'(?P<value>"[^"\n]*"(?:\s*\+\s*"[^"\n]*")*|\[[^\]]*\])',
    _OPTIONS,
)
_XML_PRIVATE = re2.compile(r"(?P<head><(?:D|P|Q|DP|DQ|InverseQ)>)(?P<value>[^<]*)", _OPTIONS)
_WIREGUARD = re2.compile(r"(?i)(?P<head>PrivateKey\s*=\s*)(?P<value>[A-Za-z0-9+/]{43}=)", _OPTIONS)
# Lower-case pieces every form starts with; a text holding none of them holds no key.
_KEY_WORDS = (
    *(b"private", b"putty", b"age-", b"minisign", b'"d"', b"<d", b"ls0tls1"),
    *(b"mii", b"ageamb", b"agebb", b"mc4c", b"mhcc", b"rwrty0iy", b"rwqaaeiy"),
)
# A line that is only more of a key body: base64 perhaps quoted, escaped, concatenated or led
# by a diff's sign (a body wrapped in YAML, or split over string literals).
_BODY_ONLY = re2.compile(
    r"^[ \t+\-]*[\"'`]?[A-Za-z0-9+/_\-]{16,}=*(?:\\n)?[\"'`]?[ \t]*[+,;)]*[ \t]*\r?$", _OPTIONS
)
# What tells a key's armour is closed: a PEM's END line, PuTTY's MAC.
_PEM_BEGIN = re2.compile(r"(?i)-{4,5} ?BEGIN[ A-Z0-9]{0,40}PRIVATE KEY", _OPTIONS)
_PEM_END = re2.compile(r"(?i)-{4,5} ?END[ A-Z0-9]{0,40}PRIVATE KEY", _OPTIONS)
# A file with fewer characters than this outside its keys (spaces aside) is a key file,
# refused whole.
_MIN_OTHER_CHARS = 24
REDACTED_KEY = "[private key redacted]"
REDACTED_VALUE = "[redacted]"


def has_private_key(data: bytes | str) -> bool:
    """True when the contents hold the start of a private key in any form."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    lowered = raw.lower()
    # Plain substring searches first: every form names itself, and most files name none.
    if not any(word in lowered for word in _KEY_WORDS):
        return False
    return _KEY_MARK.search(raw) is not None


def redact_keys(text: str) -> str:
    """The text with every private key replaced, one marker per line it took."""
    if not has_private_key(text):
        return text
    text = _KEY_BLOCK.sub(_per_line, text)
    if '"kty"' in text:
        text = _JWK_PRIVATE.sub(_value, text)
    if "<RSAKeyValue" in text or "<RSAKeyPair" in text:
        text = _XML_PRIVATE.sub(_value, text)
    return _following_body(_WIREGUARD.sub(_value, text))


def readable_contents(data: bytes) -> bytes | None:
    """A file's contents as a reader may show them: unchanged when they hold no key, the key
    material replaced line for line when the key sits in ordinary code or configuration, and
    None (refuse the file whole) when the file is essentially a key or a key's extent is not
    certain (an armour never closed, text that is not UTF-8, a key start left after redaction).
    """
    if not has_private_key(data):
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(_PEM_BEGIN.findall(text)) != len(_PEM_END.findall(text)):
        return None  # an armour never closed (or an end without its start): unsure, refuse
    if "PuTTY-User-Key-File-" in text and "Private-MAC:" not in text:
        return None
    redacted = redact_keys(text)
    if has_private_key(redacted):
        return None  # a start the redaction did not take away: its extent is not known
    rest = redacted.replace(REDACTED_KEY, "").replace(REDACTED_VALUE, "")
    if len("".join(rest.split())) < _MIN_OTHER_CHARS:
        return None  # little but the key: a key file, whatever its name
    return redacted.encode("utf-8")


def _following_body(text: str) -> str:
    """Lines of base64 right after a redacted key are more of its body (a wrapped YAML value, a
    body split over string literals): they are redacted too."""
    if REDACTED_KEY not in text and REDACTED_VALUE not in text:
        return text
    lines = text.split("\n")
    after_key = False
    for number, line in enumerate(lines):
        if after_key and _BODY_ONLY.search(line) is not None:
            lines[number] = REDACTED_KEY
            continue
        after_key = REDACTED_KEY in line or _ends_redacted_value(line)
    return "\n".join(lines)


def _ends_redacted_value(line: str) -> bool:
    return line.rstrip().rstrip(",;+").rstrip().endswith(REDACTED_VALUE)


def _per_line(match: Any) -> str:
    return "\n".join([REDACTED_KEY] * (match[0].count("\n") + 1))


def _value(match: Any) -> str:
    """The member's value replaced, one marker per line it took (line numbers stay true)."""
    g = named(match)
    return str(g["head"]) + "\n".join([REDACTED_VALUE] * (str(g["value"]).count("\n") + 1))
