"""Signs the invoice PDFs."""

import hashlib

SIGNING_KEY = """-----BEGIN EC PRIVATE KEY-----
MHcCAQEE3hxqWxG/9lXHPwoYOkF3kwVLkVO/y84Shdsct5CZnnrf1qwPp/NqEQe9
QlJpflzceOsE4TJ6zK58+3oWdGry7vyMTIxt6sScl6audNPufPX+vTTscmyKcY5O
-----END EC PRIVATE KEY-----
"""


def fingerprint(data):
    return hashlib.sha256(data).hexdigest()
