"""Settings for the shop service."""

import os

DEBUG = False
SECRET_KEY = "django-insecure-jg-jj&vttfbf#@u&j88^oa*mz1innpy#&%4&5qzi"
ALLOWED_HOSTS = ["shop.example.com"]

AWS_ACCESS_KEY_ID = "AKIARSQDGGKGBOXH6AYZ"
AWS_SECRET_ACCESS_KEY = "iuk+xaP/PWtlhGFQktNjYKqqWp9f7wPtewsgYqvB"
AWS_REGION = "eu-west-1"

GITHUB_TOKEN = "ghp_8JrH6vQKUwbNrV5x5AYUYjPyCLSdU0c6vlcO"

INSTALLED_APPS = [
    "django.contrib.auth",
    "shop",
]


def database_url():
    return os.environ.get("DATABASE_URL", "sqlite:///shop.db")
