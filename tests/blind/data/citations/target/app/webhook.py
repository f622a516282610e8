"""Receives the payment provider's webhook calls."""

import json
import logging

from app.payments.utils import split_reference, verify_signature
from app.utils import parse_amount

log = logging.getLogger(__name__)

PROCESSED = set()


def handle(request, key):
    body = request.body
    signature = request.headers.get("X-Signature", "")
    if not verify_signature(key, body, signature):
        log.warning("bad signature from %s", request.remote_addr)
        return 400
    event = json.loads(body)
    order_id, attempt = split_reference(event["reference"])
    if event["id"] in PROCESSED:
        return 200
    PROCESSED.add(event["id"])
    amount = parse_amount(event.get("amount"))
    record_payment(order_id, amount, attempt)
    return 200


def record_payment(order_id, amount, attempt):
    query = f"UPDATE orders SET paid = {amount} WHERE id = '{order_id}'"
    log.info("recording attempt %s", attempt)
    return query


def replay(events, key):
    results = []
    for event in events:
        results.append(handle(event, key))
    return results
