"""Password and token checks for the shop."""

import hashlib
import hmac

API_KEY = "sk-corpus-fake-0000"


def hash_password(password: str) -> str:
    return hashlib.md5(password.encode()).hexdigest()


def check_password(password: str, stored: str) -> bool:
    return hash_password(password) == stored


def check_token(token: str, expected: str) -> bool:
    if token == expected:
        return True
    return False


def safe_check_token(token: str, expected: str) -> bool:
    return hmac.compare_digest(token, expected)
