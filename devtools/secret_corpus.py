"""A target project with a secret in every form the secret rule knows, for the secret suite.

Each secret is a distinct string listed under its form (names, tokens, keys, URL encodings,
file names), so a test can count, form by form, what reached the model, the stored events, the
kept lines and the exports. The ordinary code around the secrets is listed too (`settings.py`'s
lines that hold none), so a test can show it still arrives unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def _b64(seed: str, size: int) -> str:
    """Deterministic base64 text of `size` characters."""
    out = b""
    counter = 0
    while len(out) * 4 < size * 3 + 8:
        out += hashlib.sha256(f"{seed}{counter}".encode()).digest()
        counter += 1
    return base64.b64encode(out).decode()[:size]


def _hex(seed: str, size: int = 64) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:size]


def _lines(text: str, width: int = 64) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


GHP = "ghp_" + _b64("ghp", 36).replace("+", "a").replace("/", "b")
AWS_ID = "AKIAQ7EXAMPLE3KEY7ZZ"
# Made-up secrets, planted for the suite to find.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRET01"  # noqa: S105
DJANGO_KEY = "django-insecure-q8#n2k$v7w!x9z@p4m6r1t3y5u0i"
PG_PASSWORD = "pg-S3cret-value-4411"  # noqa: S105

SETTINGS_PY = f'''"""Settings for the shop."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "{DJANGO_KEY}"
DEBUG = False
ALLOWED_HOSTS = ["shop.example.com"]
AWS_ACCESS_KEY_ID = "{AWS_ID}"
AWS_SECRET_ACCESS_KEY = "{AWS_SECRET}"
GITHUB_TOKEN = "{GHP}"
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "PASSWORD": "{PG_PASSWORD}",
    }}
}}
TIME_ZONE = os.environ.get("TZ", "UTC")
INSTALLED_APPS = ["django.contrib.auth", "shop"]
'''
# The lines of settings.py that hold no secret: the model must read them exactly.
SETTINGS_CODE = [
    line
    for line in SETTINGS_PY.splitlines()
    if not any(s in line for s in (DJANGO_KEY, AWS_ID, AWS_SECRET, GHP, PG_PASSWORD))
]

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + _lines("MIIEowIBAAKCAQEA" + _b64("pem", 240))
    + "\n-----END RSA PRIVATE KEY-----\n"
)
PKCS8_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + _b64("pkcs8", 300)
WIREGUARD = _b64("wg", 43) + "="
JWK_D = _b64("jwk", 86).replace("+", "-").replace("/", "_")
RSA_D = _b64("rsad", 172)
MINISIGN = "RWRTY0Iy" + _b64("minisign", 150)
ETH = "0x" + _hex("eth")
EC_BODY = "MHcCAQEEI" + _b64("ec", 110)
WG_NOTE = _b64("wgnote", 43) + "="
JWKS_D = _b64("jwksd", 86).replace("+", "-").replace("/", "_")
# Ordinary files that embed a key: each is read with the key redacted and its code kept.
EMBEDDED_KEYS = {
    "app/tls_client.py": "import ssl\n\n"
    f'CLIENT_KEY = """{PEM}"""\n\n\ndef context() -> ssl.SSLContext:\n'
    "    return ssl.create_default_context()\n",
    "auth/jwks.json": '{"keys": [{"kty": "RSA", "kid": "signing-2024", "use": "sig", '
    f'"e": "AQAB", "n": "{_b64("jwksn", 86)}", "d": "{JWKS_D}"}}]}}\n',
    "auth/jwks.js": "export const jwk = {\n"
    '  "kty": "EC", "crv": "P-256", "use": "sig",\n'
    f'  "d": "{JWKS_D[:30]}" +\n    "{JWKS_D[30:60]}",\n'
    "};\nexport default jwk;\n",
    "k8s/web-tls.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-tls\n"
    "type: kubernetes.io/tls\ndata:\n  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n"
    f"  tls.key: {base64.b64encode(PEM.encode()).decode()}\n",
    "notes/vpn-setup.txt": "Notes from setting up the office VPN.\n\n[Interface]\n"
    f"Address = 10.8.0.1/24\nPrivateKey = {WG_NOTE}\nListenPort = 51820\n",
    "src/main/java/shop/Signer.java": "package shop;\n\npublic final class Signer {\n"
    '    static final String KEY = "-----BEGIN EC PRIVATE KEY-----\\n"\n'
    f'        + "{EC_BODY[:64]}\\n"\n        + "{EC_BODY[64:]}\\n"\n'
    '        + "-----END EC PRIVATE KEY-----\\n";\n\n'
    "    public String sign(String payload) {\n        return payload;\n    }\n}\n",
}
EMBEDDED_KEY_SECRETS = [
    PEM.splitlines()[3], PEM.splitlines()[-2], base64.b64encode(PEM.encode()).decode()[60:120],
    JWKS_D, JWKS_D[:30], JWKS_D[30:60], WG_NOTE, EC_BODY[9:64], EC_BODY[64:],
]  # fmt: skip
# Files named with the credential they hold, and the values the names carry.
CREDENTIAL_NAMES = {
    "backups/postgres_shop_password=DumpTxLNOUkKjx.sql": "DumpTxLNOUkKjx",
    "exports/api_key:KeyInName7731.csv": "KeyInName7731",
    "tmp/deploy_token=TokInName5512": "TokInName5512",
    "mirror/ftp_admin:FtpPwInName88@files.example.com.txt": "FtpPwInName88",
}


@dataclass(kw_only=True)
class SecretCorpus:
    root: Path
    forms: dict[str, list[str]] = field(default_factory=dict)  # form -> secrets
    secret_files: list[str] = field(default_factory=list)  # relative paths of secret names
    ordinary: list[str] = field(default_factory=list)  # files a reader may open

    @property
    def secrets(self) -> list[str]:
        return [secret for values in self.forms.values() for secret in values]

    def leaks(self, text: str) -> dict[str, list[str]]:
        """The secrets, by form, that appear in `text` (file names count when listed)."""
        found = {
            form: [secret for secret in values if secret in text]
            for form, values in self.forms.items()
        }
        found["file names"] = [path for path in self.secret_files if _listed(path, text)]
        return {form: hits for form, hits in found.items() if hits}


def _listed(path: str, text: str) -> bool:
    """True when a listing names the secret file (its path at the start of a line)."""
    return any(line.split("  ")[0].rstrip("/") == path for line in text.splitlines()) or (
        f"{path}:" in text  # grep's `path:line:` and git's notes
    )


def write_secret_corpus(base: Path) -> SecretCorpus:
    """The corpus under base/secret-target, with files in every form."""
    root = base / "secret-target"
    corpus = SecretCorpus(root=root)
    tokens = {
        "settings.py": SETTINGS_PY,
        "docker-compose.yml": "services:\n  db:\n    image: postgres:16\n    environment:\n"
        "      POSTGRES_PASSWORD: compose-pw-7711\n      POSTGRES_USER: shop\n"
        "  web:\n    environment:\n      - POSTGRES_PASSWORD=compose-pw-7712\n",
        "src/main/resources/application.properties": "server.port=8080\n"
        "spring.datasource.username=shop\nspring.datasource.password=props-pw-8813\n",
        "deploy/admin-user.yaml": "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n"
        "  user:\n    token: kubetok-9914xyzzy\n",
        "appsettings.json": '{\n  "Storage": "DefaultEndpointsProtocol=https;AccountName=shop;'
        f'AccountKey={_b64("azure", 86)}==;EndpointSuffix=core.windows.net"\n}}\n',
        "scripts/setup.sh": f"#!/bin/sh\nexport GITHUB_TOKEN={GHP[:-4]}WXYZ\n"
        "export API_TOKEN=shtok-5521abc\nmysql -u root -pMysqlPw-6631 shop\n"
        'curl -H "Authorization: Bearer bearer-tok-0123456789abcdef" https://api.example.com\n',
        "app/chat.py": 'SLACK = "xoxb-1234567890-abcdefghijkl"\n'
        'STRIPE = "sk_live_' + _b64("stripe", 24).replace("+", "a").replace("/", "b") + '"\n'
        'MAPS = "AIza' + _b64("gmaps", 35).replace("+", "a").replace("/", "b") + '"\n'
        'JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzaG9wLWp3dCJ9.' + _b64("jwt", 43) + '"\n',
        "hardhat.config.js": "module.exports = { networks: { main: "
        f'{{ accounts: ["{ETH}"] }} }} }};\n',
        "config/app.xml": "<config>\n  <password>xml-pw-2214</password>\n"
        '  <add key="DbPassword" value="xml-pw-2215"/>\n</config>\n',
    }
    corpus.forms["names"] = [
        DJANGO_KEY, AWS_SECRET, PG_PASSWORD, "compose-pw-7711", "compose-pw-7712",
        "props-pw-8813", "kubetok-9914xyzzy", "shtok-5521abc", "MysqlPw-6631",
        "xml-pw-2214", "xml-pw-2215", _b64("azure", 86),
    ]  # fmt: skip
    corpus.forms["tokens"] = [
        AWS_ID, GHP, f"{GHP[:-4]}WXYZ", "bearer-tok-0123456789abcdef", "xoxb-1234567890",
        "sk_live_", "AIza", "eyJzdWIiOiJzaG9wLWp3dCJ9", ETH[2:],
    ]  # fmt: skip
    keys = {
        "k8s/tls-secret.yaml": "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\ndata:\n"
        f"  tls.key: {base64.b64encode(PEM.encode()).decode()}\n",
        "keys/jwk.json": '{"kty": "RSA", "e": "AQAB", "n": "' + _b64("jwkn", 86) + '", '
        f'"d": "{JWK_D}"}}\n',
        "keys/key.xml": f"<RSAKeyValue><Modulus>{_b64('mod', 172)}</Modulus>"
        f"<Exponent>AQAB</Exponent><D>{RSA_D}</D></RSAKeyValue>\n",
        "notes/signing.txt": f"untrusted comment: minisign encrypted secret key\n{MINISIGN}\n",
        "certs/body.txt": _lines(PKCS8_BODY) + "\n",
        "vpn/peer.ini": f"[Interface]\nAddress = 10.0.0.2/32\nPrivateKey = {WIREGUARD}\n",
        "app/keys.py": f'KEY = """{PEM}"""\n',
    }
    corpus.forms["keys"] = [
        base64.b64encode(PEM.encode()).decode()[40:100], JWK_D, RSA_D, MINISIGN[:40],
        PKCS8_BODY[:40], PKCS8_BODY[70:110], WIREGUARD, PEM.splitlines()[2],
    ]  # fmt: skip
    urls = {
        "config/urls.env.txt": "DB=postgres://app:p#ss-url1@db/app\n"
        "API=https://app:pa/ss-url2@h.example/x\n"
        "REPO=https://shorttok3@github.com/o/r\n"
        "REDIS=redis://:redis-url8@cache:6379/0\n",
        "config/urls.json": '{"a": "https:\\/\\/u:json-url4@host\\/x", '
        '"b": "https://u:uni-url7\\u0040host"}\n',
        "config/redirects.txt": "next=https%3A%2F%2Fu%3Apct-url5%40host%2F\n"
        "again=https%253A%252F%252Fu%253Apct2-url6%2540host\n",
    }
    corpus.forms["URL encodings"] = [
        "p#ss-url1", "pa/ss-url2", "shorttok3", "json-url4", "pct-url5", "pct2-url6",
        "uni-url7", "redis-url8",
    ]  # fmt: skip
    named = [
        ".env1", ".envs/.production/.django", ".flaskenv", "credentials", "config/secret.yml",
        "kubeconfig", "terraform.tfvars", "wg0.conf", ".bash_history", ".psql_history",
        "gcloud/application_default_credentials.json", ".config/rclone/rclone.conf",
        ".config/hub",
    ]  # fmt: skip
    corpus.forms["keys in ordinary files"] = EMBEDDED_KEY_SECRETS
    corpus.forms["credentials in file names"] = list(CREDENTIAL_NAMES.values())
    files = {**tokens, **keys, **urls, **EMBEDDED_KEYS}
    files.update({path: "id,total\n1,20\n" for path in CREDENTIAL_NAMES})
    for number, path in enumerate(named):
        files[path] = f"value=file-name-secret-{number:02d}\n"
    corpus.forms["file contents"] = [f"file-name-secret-{n:02d}" for n in range(len(named))]
    corpus.secret_files = named
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    corpus.ordinary = sorted({*tokens, *urls, *EMBEDDED_KEYS})
    return corpus


def commit_corpus(corpus: SecretCorpus) -> None:
    """Make the corpus a git repository: everything in history, then a change on top of it, and
    a further change left in the working tree."""
    root = corpus.root
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "First version of the shop")
    with (root / "settings.py").open("a") as out:
        out.write('EMAIL_HOST_PASSWORD = "mail-pw-3316"\n')
    corpus.forms["names"].append("mail-pw-3316")
    _git(root, "commit", "-q", "-am", "Mail settings")
    with (root / "docker-compose.yml").open("a") as out:
        out.write("      - REDIS_PASSWORD=worktree-pw-4417\n")
    corpus.forms["names"].append("worktree-pw-4417")


def _git(root: Path, *args: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
