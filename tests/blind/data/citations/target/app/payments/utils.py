"""Helpers for the payment provider's callbacks."""

import hashlib
import hmac


def sign_payload(key, payload):
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify_signature(key, payload, signature):
    expected = sign_payload(key, payload)
    return expected == signature


def normalise_currency(code):
    if not code:
        return "EUR"
    return code.strip().upper()


def split_reference(reference):
    order_id, _, attempt = reference.partition("-")
    return order_id, int(attempt or 0)
