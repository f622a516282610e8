"""Which model a run uses and where it is served: `provider/model` plus provider settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from runs.backends.base import EndpointConfig

DEMO_PROVIDER = "demo"
# Each provider speaks the OpenAI-compatible API; slots = requests it serves in parallel.
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "llama-swap": {"base_url": "http://127.0.0.1:8080/v1", "slots": 1},
    "llama-cpp": {"base_url": "http://127.0.0.1:8080/v1", "slots": 1},
    "ollama": {"base_url": "http://127.0.0.1:11434/v1", "slots": 1},
    "vllm": {"base_url": "http://127.0.0.1:8001/v1", "slots": 8},
    # The scripted model that ships with the project, started in-process on demand.
    DEMO_PROVIDER: {"base_url": "", "slots": 4},
}
_KNOWN_KEYS = {
    "base_url",
    "slots",
    "api_key",
    "first_byte_timeout",
    "read_timeout",
    "max_retries",
    "connect_timeout",
}


@dataclass(frozen=True, kw_only=True)
class ModelTarget:
    model_id: str  # as stored on the run: provider/model
    provider: str
    name: str  # sent to the server in the request body
    slots: int
    endpoint: EndpointConfig

    @property
    def is_demo(self) -> bool:
        return self.provider == DEMO_PROVIDER


def configured_model_id() -> str:
    """The model id new runs get, checked without contacting or starting anything."""
    model_id: str = settings.ORCHESTRATOR_MODEL
    _provider_conf(model_id)
    return model_id


def _provider_conf(model_id: str) -> tuple[str, str, dict[str, Any]]:
    provider, sep, name = model_id.partition("/")
    if not sep or not provider or not name:
        raise ImproperlyConfigured(
            f"ORCHESTRATOR_MODEL must look like provider/model, got {model_id!r}"
        )
    providers = {**DEFAULT_PROVIDERS, **settings.ORCHESTRATOR_PROVIDERS}
    if provider not in providers:
        raise ImproperlyConfigured(
            f"ORCHESTRATOR_MODEL names provider {provider!r}; known providers: "
            f"{', '.join(sorted(providers))} (add one with ORCHESTRATOR_PROVIDERS)"
        )
    conf = dict(providers[provider])
    unknown = set(conf) - _KNOWN_KEYS
    if unknown:
        raise ImproperlyConfigured(
            f"ORCHESTRATOR_PROVIDERS[{provider!r}] has unknown keys {sorted(unknown)}"
        )
    return provider, name, conf


def resolve_model(model_id: str | None = None) -> ModelTarget:
    """Resolve a `provider/model` id to an endpoint; starts the demo model when selected."""
    model_id = model_id or settings.ORCHESTRATOR_MODEL
    provider, name, conf = _provider_conf(model_id)
    base_url = settings.ORCHESTRATOR_BASE_URL or conf.get("base_url", "")
    if provider == DEMO_PROVIDER and not settings.ORCHESTRATOR_BASE_URL:
        from runs.demo_model import demo_server_url

        base_url = demo_server_url()
    if not str(base_url).startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"the base URL for provider {provider!r} must be http(s)://..., got {base_url!r}"
        )
    slots = settings.ORCHESTRATOR_SLOTS or int(conf.get("slots", 1))
    endpoint_fields = {
        k: conf[k]
        for k in ("api_key", "first_byte_timeout", "read_timeout", "max_retries", "connect_timeout")
        if k in conf
    }
    return ModelTarget(
        model_id=model_id,
        provider=provider,
        name=name,
        slots=max(1, slots),
        endpoint=EndpointConfig(base_url=str(base_url).rstrip("/"), model=name, **endpoint_fields),
    )
