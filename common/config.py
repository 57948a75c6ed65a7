"""Typed settings, read once from the environment; a missing required value stops start-up."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_PORTS = {"user_service": 8001, "activity_service": 8002, "order_service": 8003}


class ConfigError(SystemExit):
    """Raised at start-up when the environment does not describe a runnable service."""

    def __init__(self, message: str):
        super().__init__(f"configuration error: {message}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float | None = None
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _secret(env: Mapping[str, str], name: str, required: bool) -> str | None:
    """A secret comes from NAME, or from the file named by NAME_FILE."""
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path} cannot be read: {exc.strerror}") from None
    if required:
        raise ConfigError(f"{name} (or {name}_FILE) must be set")
    return None


SAMPLERS = (
    "parentbased_always_on",
    "parentbased_traceidratio",
    "parentbased_always_off",
    "always_on",
    "traceidratio",
    "always_off",
)


def _otel_check(env: Mapping[str, str]) -> None:
    """The OTEL_* variables the SDK reads itself, checked so a typo stops start-up."""
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf, got {protocol!r}")
    sampler = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").lower()
    if sampler not in SAMPLERS:
        known = ", ".join(SAMPLERS)
        raise ConfigError(f"OTEL_TRACES_SAMPLER must be one of {known}, got {sampler!r}")
    if sampler.endswith("traceidratio"):
        ratio = _float(env, "OTEL_TRACES_SAMPLER_ARG", 1.0)
        if not 0 <= ratio <= 1:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be between 0 and 1, got {ratio}")


@dataclass(frozen=True)
class Settings:
    service_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = ""
    db_prefix: str = "seckill"
    db_pool_size: int = 10
    peer_urls: dict[str, str] = field(default_factory=dict)
    advertise_host: str = "127.0.0.1"
    consul_host: str | None = None
    consul_port: int = 8500
    consul_tags: tuple[str, ...] = ("seckill",)
    consul_check_interval: float = 5.0
    consul_check_timeout: float = 2.0
    consul_deregister_after: float = 60.0
    otel_endpoint: str | None = None
    otel_traces_endpoint: str | None = None  # a full traces URL, if it differs from the base
    otel_disabled: bool = False
    service_token: str | None = None
    token_private_key: str | None = None
    token_ttl_seconds: int = 3600
    password_hash_cost: int = 14
    admin_username: str | None = None
    admin_password: str | None = None
    seckill_batch_max: int = 200
    seckill_batch_wait_ms: float = 0.0
    access_log: bool = True
    log_level: str = "INFO"

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
        suffix = self.service_name.removesuffix("_service")
        return f"{self.db_prefix}_{suffix}"

    @classmethod
    def from_env(cls, service_name: str, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if service_name not in SERVICE_PORTS:
            raise ConfigError(f"unknown service {service_name!r}")
        _otel_check(env)
        ports = {
            name: _int(env, f"{name.upper()}_PORT", default, minimum=1)
            for name, default in SERVICE_PORTS.items()
        }
        peer_urls = {
            name: env.get(f"{name.upper()}_URL") or f"http://127.0.0.1:{port}"
            for name, port in ports.items()
        }
        prefix = env.get("SECKILL_DB_PREFIX", "seckill")
        if not prefix.replace("_", "").isalnum():
            raise ConfigError(f"SECKILL_DB_PREFIX must be letters, digits and _, got {prefix!r}")
        host = env.get("SERVICE_HOST", "127.0.0.1")
        return cls(
            service_name=service_name,
            host=host,
            port=ports[service_name],
            workers=_int(env, "SECKILL_WORKERS", 1, minimum=1),
            mysql_host=env.get("MYSQL_HOST", "127.0.0.1"),
            mysql_port=_int(env, "MYSQL_PORT", 3306, minimum=1),
            mysql_user=env.get("MYSQL_USER", "root"),
            mysql_password=_secret(env, "MYSQL_PASSWORD", required=False) or "",
            db_prefix=prefix,
            db_pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
            peer_urls=peer_urls,
            consul_host=env.get("CONSUL_HOST") or None,
            consul_port=_int(env, "CONSUL_PORT", 8500, minimum=1),
            advertise_host=env.get("SERVICE_ADVERTISE_HOST") or _advertised(host),
            consul_tags=tuple(
                tag.strip() for tag in env.get("CONSUL_TAGS", "seckill").split(",") if tag.strip()
            ),
            consul_check_interval=_float(env, "CONSUL_CHECK_INTERVAL", 5.0, minimum=0.1),
            consul_check_timeout=_float(env, "CONSUL_CHECK_TIMEOUT", 2.0, minimum=0.1),
            consul_deregister_after=_float(env, "CONSUL_DEREGISTER_AFTER", 60.0, minimum=1.0),
            otel_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            otel_traces_endpoint=env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None,
            otel_disabled=_bool(env, "OTEL_SDK_DISABLED", False),
            service_token=_secret(env, "SERVICE_TOKEN", required=service_name != "user_service"),
            token_private_key=_secret(
                env, "TOKEN_PRIVATE_KEY", required=service_name == "user_service"
            ),
            token_ttl_seconds=_int(env, "TOKEN_TTL_SECONDS", 3600, minimum=1),
            password_hash_cost=_int(env, "PASSWORD_HASH_COST", 14, minimum=4),
            admin_username=env.get("ADMIN_USERNAME") or None,
            admin_password=_secret(env, "ADMIN_PASSWORD", required=False),
            seckill_batch_max=_int(env, "SECKILL_BATCH_MAX", 200, minimum=1),
            seckill_batch_wait_ms=_float(env, "SECKILL_BATCH_WAIT_MS", 0.0),
            access_log=_bool(env, "ACCESS_LOG", True),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
        )
