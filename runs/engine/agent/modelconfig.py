"""Which model a run uses and where it is served: `provider/model` plus provider settings.

A provider's `base_url` (and ORCHESTRATOR_BASE_URL) may list several endpoints: servers of
the same model, on one GPU box each. A run records them all at launch (comma-separated), and
the scheduler places each turn on one of them (runs.engine.queue.placement).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator_site.env import split_urls
from runs.demo.provider import demo_server_url
from runs.engine.agent.backends.base import EndpointConfig
from runs.engine.problems import validation_problems
from runs.server_slots import ServerSlots

DEMO_PROVIDER = "demo"
MAX_SLOTS = 256  # parallel requests one server takes, at most
# Each provider speaks the OpenAI-compatible API; slots = requests it serves in parallel.
# structured_output: the server enforces a `response_format` JSON schema (llama.cpp, and
# llama-swap in front of it, vLLM and Ollama do); a server that refuses one is asked in prose.
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "llama-swap": {"base_url": "http://127.0.0.1:8080/v1", "slots": 1, "structured_output": True},
    "llama-cpp": {"base_url": "http://127.0.0.1:8080/v1", "slots": 1, "structured_output": True},
    "ollama": {"base_url": "http://127.0.0.1:11434/v1", "slots": 1, "structured_output": True},
    "vllm": {"base_url": "http://127.0.0.1:8001/v1", "slots": 8, "structured_output": True},
    # The scripted model that ships with the project, started in-process on demand.
    DEMO_PROVIDER: {"base_url": "", "slots": 4},
}


class ProviderConf(BaseModel):
    """One provider's settings, validated so a typo fails at start with the variable's name."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | list[str] = ""  # one endpoint, or several serving the same model
    slots: int = Field(default=1, ge=1, le=MAX_SLOTS)
    api_key: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    first_byte_timeout: float = Field(default=600.0, gt=0)
    read_timeout: float = Field(default=120.0, gt=0)
    # Seconds a turn keeps retrying after its first fault; unset: ORCHESTRATOR_RETRY_SECONDS.
    retry_seconds: float | None = Field(default=None, ge=0)
    max_retries: int | None = Field(default=None, ge=0, le=1000)  # also cap the count
    backoff_base: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=10.0, ge=0)
    # Off unless known: an unknown server may ignore response_format and answer in prose.
    structured_output: bool = False

    @field_validator("base_url", mode="before")
    @classmethod
    def _http_urls(cls, value: Any) -> Any:
        if value == "":
            return value
        try:
            split_urls("base_url", value)
        except ImproperlyConfigured as exc:
            raise ValueError(str(exc).removeprefix("base_url ")) from None
        return value

    def urls(self) -> list[str]:
        return split_urls("base_url", self.base_url) if self.base_url else []


@dataclass(frozen=True, kw_only=True)
class ModelTarget:
    model_id: str  # as stored on the run: provider/model
    provider: str
    name: str  # sent to the server in the request body
    slots: int  # the cap this engine applies (ORCHESTRATOR_SLOTS, else the provider's)
    slots_setting: int  # ORCHESTRATOR_SLOTS as set (0: unset, so the server may say)
    endpoint: EndpointConfig
    structured_output: bool = False  # ask schema-shaped answers where a step kind takes them
    server_slots: int | None = None  # what the server said it has (/props), once asked
    # Every endpoint serving the model (base URLs); `endpoint` is the first one's settings.
    endpoints: tuple[str, ...] = ()
    # Each endpoint's slot cap and own count, once its server was asked
    # (runs.engine.agent.servers).
    servers: tuple[ServerSlots, ...] = ()

    @property
    def is_demo(self) -> bool:
        return self.provider == DEMO_PROVIDER

    def caps(self) -> dict[str, int]:
        """Each endpoint's slot cap: what the scheduler places turns against."""
        caps = {server.url: server.cap for server in self.servers}
        return {
            url: caps.get(url, self.slots) for url in self.endpoints or (self.endpoint.base_url,)
        }

    def at(self, url: str) -> ModelTarget:
        """The same model, served at `url` (one of its endpoints)."""
        if url == self.endpoint.base_url or not url:
            return self
        return dataclasses.replace(self, endpoint=dataclasses.replace(self.endpoint, base_url=url))


def configured_model_id() -> str:
    """The model id new runs get, checked without contacting or starting anything."""
    model_id: str = settings.ORCHESTRATOR_MODEL
    _provider_conf(model_id)
    return model_id


def configuration_problems() -> list[str]:
    """Every mistake in the model settings, one sentence each, found without contacting or
    starting anything: the process checks them when it starts (runs/checks.py)."""
    problems = []
    for provider, raw in settings.ORCHESTRATOR_PROVIDERS.items():
        try:
            ProviderConf.model_validate(raw)
        except ValidationError as exc:
            problems.append(_invalid_provider(provider, exc).args[0])
    try:
        provider, _, conf = _provider_conf(settings.ORCHESTRATOR_MODEL)
    except ImproperlyConfigured as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
        return problems
    if settings.ORCHESTRATOR_BASE_URL:
        try:
            split_urls("ORCHESTRATOR_BASE_URL", settings.ORCHESTRATOR_BASE_URL)
        except ImproperlyConfigured as exc:
            problems.append(str(exc))
    if not (settings.ORCHESTRATOR_BASE_URL or conf.base_url or provider == DEMO_PROVIDER):
        problems.append(
            f"ORCHESTRATOR_MODEL names provider {provider!r}, which has no base_url: set "
            "ORCHESTRATOR_BASE_URL or the provider's base_url in ORCHESTRATOR_PROVIDERS"
        )
    if settings.ORCHESTRATOR_SLOTS > MAX_SLOTS:
        problems.append(
            f"ORCHESTRATOR_SLOTS must be at most {MAX_SLOTS}, got {settings.ORCHESTRATOR_SLOTS}"
        )
    return problems


def _invalid_provider(provider: str, exc: ValidationError) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"ORCHESTRATOR_PROVIDERS[{provider!r}] is invalid: {validation_problems(exc)}"
    )


def _provider_conf(model_id: str) -> tuple[str, str, ProviderConf]:
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
    try:
        conf = ProviderConf.model_validate(providers[provider])
    except ValidationError as exc:
        raise _invalid_provider(provider, exc) from None
    return provider, name, conf


def configured_endpoint(model_id: str) -> tuple[str, str]:
    """The base URLs (comma-separated) and model name a run launched now records: its
    endpoints for good.

    The base URL is empty for the scripted demo model each worker starts itself.
    """
    provider, name, conf = _provider_conf(model_id)
    if provider == DEMO_PROVIDER and not settings.ORCHESTRATOR_BASE_URL:
        return "", name
    return ",".join(_configured_urls(conf)), name


def _configured_urls(conf: ProviderConf) -> list[str]:
    if settings.ORCHESTRATOR_BASE_URL:
        return split_urls("ORCHESTRATOR_BASE_URL", settings.ORCHESTRATOR_BASE_URL)
    return conf.urls()


def _slot_setting(provider: str) -> int:
    """The per-endpoint cap a person set (ORCHESTRATOR_SLOTS, else the provider's own
    `slots` in ORCHESTRATOR_PROVIDERS); 0: each server's /props says."""
    if settings.ORCHESTRATOR_SLOTS:
        return int(settings.ORCHESTRATOR_SLOTS)
    raw = settings.ORCHESTRATOR_PROVIDERS.get(provider)
    if isinstance(raw, dict) and isinstance(raw.get("slots"), int):
        return int(raw["slots"])
    return 0


def resolve_model(model_id: str | None = None, *, base_url: str = "") -> ModelTarget:
    """Resolve a `provider/model` id to an endpoint; starts the demo model when selected.

    `base_url`, when given, is the endpoints the run recorded at launch (comma-separated):
    they win over this worker's own configuration, whose provider settings (timeouts, key)
    still apply. A worker that does not know the provider runs it with the default settings.
    """
    model_id = model_id or settings.ORCHESTRATOR_MODEL
    try:
        provider, name, conf = _provider_conf(model_id)
    except ImproperlyConfigured:
        if not base_url:
            raise
        provider, _, name = model_id.partition("/")
        conf = ProviderConf()
    urls = split_urls("the run's endpoints", base_url) if base_url else _configured_urls(conf)
    if provider == DEMO_PROVIDER and not urls:
        # The scripted demo model ships with the product; it starts on first use only.
        urls = [demo_server_url()]
    if not urls:
        raise ImproperlyConfigured(f"provider {provider!r} has no base URL")
    setting = _slot_setting(provider)
    return ModelTarget(
        model_id=model_id,
        provider=provider,
        name=name,
        slots=setting or conf.slots,
        structured_output=conf.structured_output,
        slots_setting=setting,
        endpoints=tuple(urls),
        endpoint=EndpointConfig(
            base_url=urls[0],
            model=name,
            api_key=conf.api_key,
            connect_timeout=conf.connect_timeout,
            first_byte_timeout=conf.first_byte_timeout,
            read_timeout=conf.read_timeout,
            retry_seconds=(
                settings.ORCHESTRATOR_RETRY_SECONDS
                if conf.retry_seconds is None
                else conf.retry_seconds
            ),
            max_retries=conf.max_retries,
            backoff_base=conf.backoff_base,
            max_backoff=conf.max_backoff,
        ),
    )
