"""What test_k8s.py checks in a rendered overlay. Each check returns its problems, so a test
can assert there are none, and another can break a manifest and see the check name it."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate

from common.config import SECRET, SERVICE_PORTS
from testkit.stack import SETTINGS
from tests.support.k8s_manifests import (
    POD_IP,
    ROOT,
    Doc,
    container_env,
    containers,
    mounted_files,
    of_kind,
    pod_spec,
    volume_files,
    workloads,
    writable_mounts,
)
from tests.support.routes import app_routes

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCUSTFILE = ROOT / "bench" / "locust" / "locustfile.py"
# Read by docker compose, `make run` or Locust, never by a service process.
NOT_READ_BY_SERVICES = {"MYSQL_ROOT_PASSWORD", "ACTIVITY_SERVICE_WORKERS"}
# Read by deploy/entrypoint.py, which runs the migrations.
READ_BY_ENTRYPOINT = {"SERVICE", "MYSQL_WAIT_TIMEOUT"}
# Read by common/runner.py before the workers start (docs/metrics.md).
READ_BY_RUNNER = {"PROMETHEUS_MULTIPROC_DIR"}
# Left unset on purpose: the default is right in Kubernetes.
DEFAULTED = {
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "derived from OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "OTEL_EXPORTER_OTLP_PROTOCOL is set",
    "OTEL_BSP_MAX_QUEUE_SIZE": "the SDK's default",
    "OTEL_BSP_SCHEDULE_DELAY": "the SDK's default",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "the SDK's default",
    "FORWARDED_SECRET": "only for a proxy that signs its Forwarded header",
    "FORWARDED_SECRET_FILE": "only for a proxy that signs its Forwarded header",
    "PROMETHEUS_MULTIPROC_DIR": "a fresh directory under the pod's /tmp each start",
    "DASHBOARD_KEY": "optional: the dashboard takes an admin token without it",
    "DASHBOARD_KEY_FILE": "optional: the dashboard takes an admin token without it",
    "SHOP_ORIGINS": "optional: activity_service's own address on the machine",
    "SHOP_USER_URL": "optional: the shop page's host name with USER_SERVICE_PORT",
    "SHOP_ORDER_URL": "optional: the shop page's host name with ORDER_SERVICE_PORT",
}
# The migration init container serves nothing: it neither registers nor creates the admin.
NOT_READ_BY_MIGRATIONS = {"SERVICE_ADVERTISE_HOST", "ADMIN_PASSWORD"}
# Containers that must write to their root filesystem, and why.
WRITABLE_ROOT = {"mysql": "mysqld writes its socket and pid file under /var/run/mysqld"}


@cache
def names_read(service: str) -> frozenset[str]:
    """Every variable this service's processes read: a field of its settings class (a secret
    also as NAME_FILE), the entrypoint's, and the OTEL_* of .env_template the SDK reads."""
    names = READ_BY_ENTRYPOINT | READ_BY_RUNNER
    for name, field in SETTINGS[service].model_fields.items():
        variable = str(field.validation_alias or name).upper()
        names.add(variable)
        if SECRET in field.metadata:
            names.add(f"{variable}_FILE")
    return frozenset(names | otel_sdk_names())


def otel_sdk_names() -> set[str]:
    template = (ROOT / ".env_template").read_text()
    return set(re.findall(r"^#?\s*(OTEL_[A-Z0-9_]*)=", template, re.M))


def documented_names() -> set[str]:
    """Every variable .env_template names that some service process reads."""
    template = (ROOT / ".env_template").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", template, re.M))
    return {name for name in listed if not name.startswith("LOCUST_")} - NOT_READ_BY_SERVICES


def base_name(name: str) -> str:
    return name.removesuffix("_FILE")


def app_containers(docs: list[Doc]) -> list[tuple[str, Doc, Doc, Doc]]:
    """(service, workload, pod spec, container) for every container that runs the image."""
    found = []
    for workload in workloads(docs):
        spec = pod_spec(workload)
        for container in containers(spec):
            service = {e["name"]: e.get("value") for e in container.get("env", [])}.get("SERVICE")
            if service in SERVICE_PORTS:
                found.append((service, workload, spec, container))
    return found


def check_schema(docs: list[Doc], overlay: str) -> list[str]:
    problems = []
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(exc.message)
    return problems


def check_env(docs: list[Doc], overlay: str) -> list[str]:
    """Every variable a service reads is set or defaulted, and every one set is one it reads."""
    problems = []
    for service, workload, spec, container in app_containers(docs):
        where = f"{workload['metadata']['name']}/{container['name']}"
        try:
            env = container_env(docs, container)
        except LookupError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if spec.get("enableServiceLinks") is not False:
            problems.append(f"{where}: service links would set *_SERVICE_PORT=tcp://...")
        # the ConfigMap is shared: a name is known if any of the three services reads it
        known = set().union(*(names_read(name) for name in SERVICE_PORTS))
        for name in sorted(set(env) - known):
            problems.append(f"{where} sets {name}, which no service reads (a typo?)")
        for name in sorted(names_read(service)):
            given = {name, base_name(name), f"{base_name(name)}_FILE"} & set(env)
            unused = "ports" not in container and base_name(name) in NOT_READ_BY_MIGRATIONS
            if not given and name not in DEFAULTED and not unused:
                problems.append(f"{where} leaves {name} unset")
    return problems


def settings_of(docs: list[Doc], service: str, spec: Doc, container: Doc, scratch: Path):
    """The service's settings from the container's environment, its *_FILE paths served from the
    files its mounts would hold; returns (settings or None, problems, the local env)."""
    env = container_env(docs, container)
    files = mounted_files(docs, spec, container)
    problems = []
    for name, path in list(env.items()):
        if name.endswith("_FILE"):
            if path not in files:
                problems.append(f"{container['name']}: {name}={path} is no file of its mounts")
                continue
            local = scratch / f"{container['name']}.{name}"
            local.write_text(files[path])
            env[name] = str(local)
    try:
        return SETTINGS[service].from_env(env), problems, env
    except SystemExit as exc:
        return None, [*problems, f"{container['name']}: {exc}"], env


def service_answering(docs: list[Doc], url: str) -> str | None:
    """Why a URL inside the cluster would not reach a rendered Service, or None if it does."""
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    service = of_kind(docs, "Service").get(parts.hostname or "")
    if service is None:
        return f"{parts.hostname} is not a rendered Service"
    if parts.port not in {port["port"] for port in service["spec"]["ports"]}:
        return f"Service {parts.hostname} has no port {parts.port}"
    return None


def redis_address(url: str) -> str:
    """host:port of a redis:// or rediss:// URL (6379 when it names none)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else url


def check_settings(docs: list[Doc], overlay: str) -> list[str]:
    """Each container's settings parse, and name the Services, ports and secrets meant."""
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        for service, _, spec, container in app_containers(docs):
            try:
                settings, found, _ = settings_of(docs, service, spec, container, Path(scratch))
            except LookupError as exc:
                problems.append(f"{container['name']}: {exc}")
                continue
            problems += found
            if settings is None:
                continue
            if (settings.host, settings.port) != ("0.0.0.0", SERVICE_PORTS[service]):
                problems.append(f"{container['name']}: listens on {settings.host}:{settings.port}")
            if not settings.mysql_password or not settings.service_token:
                problems.append(f"{container['name']}: MySQL password or service token empty")
            key = getattr(settings, "token_private_key", None)
            if service == "user_service" and "PRIVATE KEY" not in (key or ""):
                problems.append(f"{container['name']}: the signing key is not a PEM key")
            for peer, url in settings.peer_urls.items():
                if why := service_answering(docs, url):
                    problems.append(f"{container['name']}: {peer} at {url}: {why}")
                elif urlsplit(url).port != SERVICE_PORTS[peer]:
                    problems.append(f"{container['name']}: {peer} at {url}: not its port")
            if not settings.redis_url:
                problems.append(f"{container['name']}: no REDIS_URL: rate limits per pod")
            registers = settings.consul_host and "ports" in container  # not the migration
            if registers and settings.advertise_host != POD_IP:
                problems.append(f"{container['name']}: registers {settings.advertise_host}")
            if overlay == "dev":
                for name, url in (
                    ("MYSQL", f"{settings.mysql_host}:{settings.mysql_port}"),
                    ("OTEL", settings.otel_endpoint or ""),
                    ("REDIS", redis_address(settings.redis_url or "")),
                ):
                    if why := service_answering(docs, url):
                        problems.append(f"{container['name']}: {name} at {url}: {why}")
    return problems


def probe_port(container: Doc, port: int | str) -> int | None:
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return declared["containerPort"]
    return None


def check_probes(docs: list[Doc], overlay: str) -> list[str]:
    """Readiness on /health, liveness on /livez, on routes the app really has, on its port."""
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        for service, _, spec, container in app_containers(docs):
            if "ports" not in container:
                continue  # the migration init container serves nothing
            _, _, env = settings_of(docs, service, spec, container, Path(scratch))
            routes = app_routes(service, env)
            expected = {"readinessProbe": "/health", "livenessProbe": "/livez"}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe is None:
                    if kind in expected:
                        problems.append(f"{container['name']}: no {kind}")
                    continue
                get = probe.get("httpGet", {})
                path = get.get("path")
                if kind in expected and path != expected[kind]:
                    problems.append(f"{container['name']}: {kind} on {path}, not {expected[kind]}")
                if ("GET", path) not in routes:
                    problems.append(f"{container['name']}: {kind} path {path} is no route")
                if probe_port(container, get.get("port")) != SERVICE_PORTS[service]:
                    problems.append(f"{container['name']}: {kind} port {get.get('port')}")
    return problems


def unreadable(spec: Doc, volume: Doc) -> bool:
    """Whether the pod's user cannot read a secret volume's files (root owns them; the group
    is the pod's fsGroup when it has one)."""
    source = volume.get("secret") or volume.get("projected")
    if source is None:
        return False
    mode = source.get("defaultMode", 0o644)
    context = spec.get("securityContext", {})
    if mode & 0o004 or context.get("runAsUser") == 0:
        return False
    return not (mode & 0o040 and context.get("fsGroup") is not None)


def check_secrets(docs: list[Doc], overlay: str) -> list[str]:
    """Every Secret a workload names is generated, with the keys it asks for, and readable."""
    problems = []
    generated = of_kind(docs, "Secret")
    used = set()
    for workload in workloads(docs):
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if unreadable(spec, volume):
                problems.append(f"{workload['metadata']['name']}: cannot read {volume['name']}")
            try:
                volume_files(docs, volume)
            except LookupError as exc:
                problems.append(f"{workload['metadata']['name']}: {exc}")
            names = [volume.get("secret", {}).get("secretName")]
            names += [
                s["secret"]["name"]
                for s in volume.get("projected", {}).get("sources", [])
                if "secret" in s
            ]
            used.update(filter(None, names))
        for container in containers(spec):
            try:
                container_env(docs, container)
            except LookupError as exc:
                problems.append(f"{workload['metadata']['name']}/{container['name']}: {exc}")
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add(ref["name"])
    for name in sorted(set(generated) - used):
        problems.append(f"Secret {name} is generated but no workload uses it")
    return problems


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            if word.upper() == "FROM":
                current = stages.setdefault(rest.split(" AS ")[-1], [])
            current.append((word.upper(), rest.strip()))
    return stages


def last(stage: list[tuple[str, str]], word: str) -> str:
    return [rest for w, rest in stage if w == word][-1]


def image_repository(image: str) -> str:
    """registry.example.com:5000/seckill:1.0 -> seckill."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def run_as(spec: Doc) -> str:
    context = spec.get("securityContext", {})
    return f"{context.get('runAsUser')}:{context.get('runAsGroup')}"


def check_image_and_ports(docs: list[Doc], overlay: str) -> list[str]:
    """The image deploy/Dockerfile builds, run as its user, on the ports the services use."""
    stages = dockerfile_stages()
    service_user = last(stages["service"], "USER")
    entrypoint = json.loads(last(stages["service"], "ENTRYPOINT"))
    commands = re.search(
        r'"command", choices=\[([^]]*)\]', (ROOT / "deploy" / "entrypoint.py").read_text()
    ).group(1)
    problems = []
    for service, workload, spec, container in app_containers(docs):
        where = f"{workload['metadata']['name']}/{container['name']}"
        if image_repository(container["image"]) != "seckill":
            problems.append(f"{where}: image {container['image']} is not the seckill image")
        user = run_as(spec)
        if user != service_user:
            problems.append(f"{where}: runs as {user}, the image's USER is {service_user}")
        if "ports" not in container:
            if "command" in container or not container.get("args"):
                problems.append(f"{where}: an init container must use the image's {entrypoint}")
            elif f'"{container["args"][0]}"' not in commands:
                problems.append(f"{where}: {container['args'][0]} is no entrypoint command")
            continue
        if container.get("command") != ["python", "-m", service, "serve"]:
            problems.append(f"{where}: command {container.get('command')}")
        ports = [port["containerPort"] for port in container["ports"]]
        if ports != [SERVICE_PORTS[service]]:
            problems.append(f"{where}: container ports {ports}, not {SERVICE_PORTS[service]}")
        name = service.replace("_", "-")
        if why := service_answering(docs, f"{name}:{SERVICE_PORTS[service]}"):
            problems.append(f"{where}: {why}")
        else:
            for port in of_kind(docs, "Service")[name]["spec"]["ports"]:
                if probe_port(container, port["targetPort"]) != SERVICE_PORTS[service]:
                    problems.append(f"Service {name} targets {port['targetPort']}")
    load_user = last(stages["load"], "USER")
    locustfile = last(stages["load"], "COPY").split()[-1]
    for job in of_kind(docs, "Job").values():
        spec = pod_spec(job)
        user = run_as(spec)
        if user != load_user:
            problems.append(f"Job {job['metadata']['name']}: runs as {user}, not {load_user}")
        for container in containers(spec):
            if image_repository(container["image"]) != "seckill-load":
                problems.append(f"Job {job['metadata']['name']}: image {container['image']}")
        command = " ".join(spec["containers"][0].get("command", []))
        if f"-f /locust/{locustfile.removeprefix('./')}" not in command:
            problems.append(f"Job {job['metadata']['name']}: the locustfile is not where it is")
    return problems


def check_security(docs: list[Doc], overlay: str) -> list[str]:
    """Non-root, no privilege escalation, no capabilities, read-only root where possible."""
    problems = []
    for workload in workloads(docs):
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{workload['metadata']['name']}: mounts a service account token")
        for container in containers(spec):
            where = f"{workload['metadata']['name']}/{container['name']}"
            own = container.get("securityContext", {})
            merged = {**pod, **own}
            if merged.get("runAsNonRoot") is not True or not merged.get("runAsUser"):
                problems.append(f"{where}: may run as root")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allows privilege escalation")
            if own.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: keeps capabilities")
            if container["name"] in WRITABLE_ROOT:
                continue
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: writable root filesystem")
            elif "/tmp" not in writable_mounts(spec, container):
                # Sanic's worker manager (SECKILL_WORKERS > 1) binds a socket under /tmp
                problems.append(f"{where}: read-only root without a writable /tmp")
    return problems


def check_resources(docs: list[Doc], overlay: str) -> list[str]:
    problems = []
    for workload in workloads(docs):
        for container in containers(pod_spec(workload)):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(kind, {}))
                if missing:
                    where = f"{workload['metadata']['name']}/{container['name']}"
                    problems.append(f"{where}: no {kind} for {', '.join(sorted(missing))}")
    return problems


def check_load_job(docs: list[Doc], overlay: str) -> list[str]:
    """The Locust Job sets only options the locustfile reads, and aims at the Services."""
    problems = []
    options = set(re.findall(r'env_var="(\w+)"', LOCUSTFILE.read_text()))
    for job in of_kind(docs, "Job").values():
        locust = pod_spec(job)["containers"][0]
        env = container_env(docs, locust)
        for name in sorted(set(env) - options):
            problems.append(f"Job {job['metadata']['name']} sets {name}: locust does not read it")
        hosts = [a.split("=", 1)[1] for a in locust.get("args", []) if a.startswith("--host=")]
        urls = {"--host": hosts[0] if hosts else ""}
        urls.update((name, env.get(name, "")) for name in options if name.endswith("_URL"))
        for name, url in sorted(urls.items()):
            if why := service_answering(docs, url):
                problems.append(f"Job {job['metadata']['name']}: {name}={url}: {why}")
    return problems


def check_metrics_scrape(docs: list[Doc], overlay: str) -> list[str]:
    """Each service's pods ask to be scraped, on the port and path /metrics is served from."""
    problems = []
    for service, workload, _, container in app_containers(docs):
        if "ports" not in container:
            continue  # the migration init container serves nothing
        env = container_env(docs, container)
        if env.get("METRICS", "on") == "off":
            continue
        port = int(env.get("METRICS_PORT") or SERVICE_PORTS[service])
        template = workload["spec"]["template"].get("metadata", {})
        annotations = template.get("annotations", {})
        wanted = {
            "prometheus.io/scrape": "true",
            "prometheus.io/path": "/metrics",
            "prometheus.io/port": str(port),
        }
        for name, value in wanted.items():
            if annotations.get(name) != value:
                problems.append(
                    f"{container['name']}: {name} is {annotations.get(name)!r}, not {value!r}"
                )
    return problems


CHECKS: dict[str, Callable[[list[Doc], str], list[str]]] = {
    "schema": check_schema,
    "env": check_env,
    "settings": check_settings,
    "probes": check_probes,
    "secrets": check_secrets,
    "image_and_ports": check_image_and_ports,
    "security": check_security,
    "resources": check_resources,
    "load_job": check_load_job,
    "metrics_scrape": check_metrics_scrape,
}
