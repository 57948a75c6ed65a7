"""Typed settings, read once from the environment; a missing or bad value stops start-up.

`Settings` holds what every service needs; each service subclasses it in its own
settings.py with its own options. A field reads the variable of its alias, or of
its name in capitals. An empty variable counts as unset.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICE_PORTS = {"user_service": 8001, "activity_service": 8002, "order_service": 8003}

Sampler = Literal[
    "parentbased_always_on",
    "parentbased_traceidratio",
    "parentbased_always_off",
    "always_on",
    "traceidratio",
    "always_off",
]


class ConfigError(SystemExit):
    """Raised at start-up when the environment does not describe a runnable service."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(f"configuration error: {problem}" for problem in problems))


class FromFile:
    """Marks a secret: read from NAME, or else from the file that NAME_FILE names."""


SECRET = FromFile()


def _advertised(bind_host: str) -> str:
    """The address peers use: the bind host, or this machine's own address when bound to all.

    In a container the hostname maps to the container's IP in /etc/hosts; an IP
    needs no DNS to reach, so that is what goes into Consul.
    """
    if bind_host in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        try:
            return socket.gethostbyname(name)
        except OSError:
            return name
    return bind_host


def _env_name(name: str, field: FieldInfo) -> str:
    return str(field.validation_alias or name).upper()


class _Environment:
    """Each field's value from an environment mapping: the variable of its alias or of its name,
    in any case (empty is unset), or for a secret the file NAME_FILE names; keyed as the fields
    are validated, by alias or else by name, so that errors name the variable."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        given = {key.upper(): value for key, value in env.items() if value != ""}
        self.values: dict[str, str] = {}
        self.problems: list[str] = []
        self.unreadable: set[str] = set()
        for name, field in settings_cls.model_fields.items():
            variable = _env_name(name, field)
            key = str(field.validation_alias or name)
            path = given.get(f"{variable}_FILE")
            if variable in given:
                self.values[key] = given[variable]
            elif SECRET in field.metadata and path:
                try:
                    self.values[key] = Path(path).read_text().strip()
                except OSError as exc:
                    self.problems.append(f"{variable}_FILE={path} cannot be read: {exc.strerror}")
                    self.unreadable.add(variable)


def _problem(error: Any, secrets: set[str]) -> str:
    """One line naming the variable from one pydantic error."""
    name = str(error["loc"][0]).upper()
    if error["type"] == "missing":
        return f"{name} (or {name}_FILE) must be set" if name in secrets else f"{name} must be set"
    if error["type"] == "value_error":
        message = str(error["ctx"]["error"])
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
    if name in secrets:  # a secret is never written out, not even a refused one
        return f"{name} {message}"
    return f"{name} {message}, got {error['input']!r}"


class Settings(BaseSettings):
    """What every service needs: addresses, MySQL, logging, tracing, Consul, workers."""

    model_config = SettingsConfigDict(frozen=True, validate_by_name=True)
    service_name: ClassVar[str]

    host: str = Field("127.0.0.1", validation_alias="SERVICE_HOST")
    advertise_host: str = Field(
        default_factory=lambda data: _advertised(data["host"]),
        validation_alias="SERVICE_ADVERTISE_HOST",
    )
    workers: int = Field(1, ge=1, validation_alias="SECKILL_WORKERS")
    user_service_port: int = Field(SERVICE_PORTS["user_service"], ge=1)
    activity_service_port: int = Field(SERVICE_PORTS["activity_service"], ge=1)
    order_service_port: int = Field(SERVICE_PORTS["order_service"], ge=1)
    user_service_url: str | None = None
    activity_service_url: str | None = None
    order_service_url: str | None = None
    service_token: Annotated[str | None, SECRET] = Field(None, repr=False)
    # The longest lifetime (exp - iat) an access token may claim and still be accepted.
    token_max_ttl_seconds: int = Field(3600, ge=1)
    # How often each worker reloads the token revocation list from Redis (common/revocations.py).
    revocation_poll_seconds: float = Field(1.0, gt=0, le=4)

    mysql_host: str = "127.0.0.1"
    mysql_port: int = Field(3306, ge=1)
    mysql_user: str = "root"
    mysql_password: Annotated[str, SECRET] = Field("", repr=False)
    db_prefix: str = Field("seckill", validation_alias="SECKILL_DB_PREFIX")
    db_pool_size: int = Field(10, ge=1)

    consul_host: str | None = None
    consul_port: int = Field(8500, ge=1)
    consul_tags: Annotated[tuple[str, ...], NoDecode] = ("seckill",)
    consul_check_interval: float = Field(5.0, ge=0.1)
    consul_check_timeout: float = Field(2.0, ge=0.1)
    consul_deregister_after: float = Field(60.0, ge=1.0)

    otel_endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    # a full traces URL, if it differs from the base
    otel_traces_endpoint: str | None = Field(
        None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    otel_disabled: bool = Field(False, validation_alias="OTEL_SDK_DISABLED")
    # Read by the OpenTelemetry SDK itself; checked here so that a typo stops start-up.
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] | None = None
    otel_exporter_otlp_protocol: str = "http/protobuf"
    otel_traces_sampler: Sampler = "parentbased_always_on"
    otel_traces_sampler_arg: str | None = None

    # Slow clients (common/deadlines.py): a request's head must arrive within this many
    # seconds of its first byte, its body within so many of the head; idle keep-alive ends.
    request_head_timeout_seconds: float = Field(10.0, gt=0)
    request_body_timeout_seconds: float = Field(30.0, gt=0)
    keep_alive_timeout_seconds: float = Field(75.0, gt=0)

    # Prometheus metrics (docs/metrics.md): GET /metrics on the service's port, or on a port
    # of its own (METRICS_PORT, bound to METRICS_HOST or else SERVICE_HOST), or off.
    metrics: Literal["on", "off"] = "on"
    metrics_port: int | None = Field(None, ge=1)
    metrics_host: str | None = None

    access_log: bool = True
    log_level: str = "INFO"

    # Redis (rate limits, challenge replays, revocations, dashboard counts): empty means per
    # process, in memory. One Redis, any node of a Redis Cluster, or a Redis Sentinel: which
    # one is asked of the server at start-up (auto), or set (common/redis.py).
    redis_url: str | None = None
    redis_mode: Literal["auto", "single", "cluster", "sentinel"] = "auto"
    # Under Sentinel: the name of the primary to use (needed when a Sentinel watches several).
    redis_sentinel_master: str | None = None
    # For a Redis that asks for one (AUTH), unless the URL carries it; a secret.
    redis_password: Annotated[str | None, SECRET] = Field(None, repr=False)
    rate_limits: Literal["on", "off"] = "on"
    # The part of each limit a process may let through before Redis hears of it.
    rate_limit_local_share: float = Field(0.1, ge=0, le=1)
    # Sanic's own proxy settings: which headers may name the client (docs/operations.md).
    proxies_count: int | None = Field(None, ge=0)
    real_ip_header: str | None = None
    forwarded_secret: Annotated[str | None, SECRET] = Field(None, repr=False)

    @field_validator("db_prefix")
    @classmethod
    def _prefix_is_an_identifier(cls, prefix: str) -> str:
        if not prefix.replace("_", "").isalnum():
            raise ValueError("must be letters, digits and _")
        return prefix

    @field_validator("consul_tags", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(tag.strip() for tag in value.split(",") if tag.strip())
        return value

    @field_validator("rate_limits", "metrics", "redis_mode", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, level: str) -> str:
        return level.upper()

    @field_validator("otel_exporter_otlp_protocol")
    @classmethod
    def _http_protobuf(cls, protocol: str, info: ValidationInfo) -> str:
        # the traces protocol, when set, is the one the exporter uses
        if not info.data.get("otel_exporter_otlp_traces_protocol") and protocol != "http/protobuf":
            raise ValueError("must be http/protobuf")
        return protocol

    @field_validator("otel_traces_sampler", mode="before")
    @classmethod
    def _lower(cls, sampler: Any) -> Any:
        return sampler.lower() if isinstance(sampler, str) else sampler

    @field_validator("otel_traces_sampler_arg")
    @classmethod
    def _ratio(cls, arg: str | None, info: ValidationInfo) -> str | None:
        if arg is not None and info.data.get("otel_traces_sampler", "").endswith("traceidratio"):
            try:
                ratio = float(arg)
            except ValueError:
                raise ValueError("must be a number") from None
            if not 0 <= ratio <= 1:
                raise ValueError("must be between 0 and 1")
        return arg

    @property
    def port(self) -> int:
        """The port this service listens on: its own *_SERVICE_PORT."""
        return getattr(self, f"{self.service_name}_port")

    @property
    def peer_urls(self) -> dict[str, str]:
        """Each service's address: its *_SERVICE_URL, or loopback at its *_SERVICE_PORT."""
        ports = {name: getattr(self, f"{name}_port") for name in SERVICE_PORTS}
        return {
            name: getattr(self, f"{name}_url") or f"http://127.0.0.1:{port}"
            for name, port in ports.items()
        }

    @property
    def traces_url(self) -> str | None:
        """Where spans go over OTLP/HTTP; None leaves tracing off."""
        if self.otel_disabled:
            return None
        if self.otel_traces_endpoint:
            return self.otel_traces_endpoint
        return self.otel_endpoint.rstrip("/") + "/v1/traces" if self.otel_endpoint else None

    @property
    def database(self) -> str:
        return f"{self.db_prefix}_{self.service_name.removesuffix('_service')}"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        """Built by keyword only; from_env reads the environment (never a .env file)."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from env (os.environ by default); ConfigError names each bad variable."""
        name = getattr(cls, "service_name", None)
        if name not in SERVICE_PORTS:
            raise ConfigError(f"unknown service {name!r}")
        source = _Environment(cls, os.environ if env is None else env)
        try:
            settings = cls(**source.values)
        except ValidationError as exc:
            secrets = {_env_name(n, f) for n, f in cls.model_fields.items() if SECRET in f.metadata}
            problems = [
                _problem(error, secrets)
                for error in exc.errors()
                if not (
                    error["type"] == "missing" and str(error["loc"][0]).upper() in source.unreadable
                )
            ]
            raise ConfigError(*source.problems, *problems) from None
        if source.problems:
            raise ConfigError(*source.problems)
        return settings
