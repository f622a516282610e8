"""Clients for the services the shop talks to."""

import requests

GITLAB_URL = "https://gitlab.example.com/api/v4"
GITLAB_TOKEN = "glpat-0UFSPwmQfTIGORHPjNXh"
slack_token = 'xoxb-012511716169-6859747111541-xxkS1PitdBPuELgEpzXcIDea'
stripe.api_key = "sk_live_0a9ImohupuCbMDIH0BXrP3Ix"
HUB_TOKEN = "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"
maps_key = "AIzae3NjIjyVAAtf-sXrYoRZfbW7tLMT6RR9Zyx"


def notify(channel, text):
    return requests.post("https://slack.example.com/api/chat.postMessage", json={"channel": channel, "text": text})


def service_headers():
    return {"Authorization": "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.Q5y4TMuD_Gejgi3HiycuvjDRZucIFLzvNql6gl6CDh90XU5VwmYp8jreVMsWCajMwFwPu92a20AAZzGS.Q7jXUGNwB_PZscue34Z7g3AwTta_HqS4amxi19c3a0A"}
