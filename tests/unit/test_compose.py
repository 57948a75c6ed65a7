"""docker-compose.yml: valid compose-spec, and wired so that `docker compose up` can work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from common.config import SERVICE_PORTS
from testkit.stack import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = tuple(SERVICE_PORTS)
# Addresses a service binds or advertises for itself, not a peer it reaches.
OWN_ADDRESS = {"SERVICE_HOST", "SERVICE_ADVERTISE_HOST"}
SECRET = re.compile(r"PASSWORD|TOKEN$|PRIVATE_KEY$")
# Services that may run as several replicas (`docker compose up --scale NAME=3`).
SCALED = ("activity_service", "order_service")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def host_ports(entry: str | dict) -> set[int]:
    """The host ports one `ports:` entry publishes (short syntax, ranges included)."""
    if isinstance(entry, dict):
        published = str(entry.get("published", ""))
    else:
        parts = str(entry).split(":")
        published = parts[-2] if len(parts) >= 2 else ""
    if not published:
        return set()
    first, _, last = published.partition("-")
    return set(range(int(first), int(last or first) + 1))


def test_validates_against_the_compose_spec_schema():
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_unknown_key(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text(COMPOSE_FILE.read_text().replace("    profiles: [", "    profile: ["))
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "profile" in result.stdout


def test_has_no_version_key_and_the_whole_stack(compose):
    assert "version" not in compose
    assert {"mysql", "consul", "jaeger", "locust", *APP_SERVICES} <= set(compose["services"])
    assert compose["services"]["locust"]["profiles"] == ["load"]


def test_every_host_in_an_environment_is_a_service_of_the_file(compose):
    services = set(compose["services"])
    checked = 0
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if key in OWN_ADDRESS or not value or "${" in value:
                continue
            if "://" in value:
                host = urlsplit(value).hostname
            elif key.endswith("_HOST"):
                host = value
            else:
                continue
            assert host in services, f"{name}: {key}={value} names no service of the file"
            checked += 1
    assert checked >= 20


def test_peer_urls_use_the_port_each_service_listens_on(compose):
    for name in (*APP_SERVICES, "locust"):
        for key, value in environment(compose["services"][name]).items():
            url = urlsplit(value)
            if url.hostname in SERVICE_PORTS:
                assert url.port == SERVICE_PORTS[url.hostname], f"{name}: {key}={value}"


def test_app_services_find_consul_trace_to_jaeger_and_listen_on_all_interfaces(compose):
    for name in APP_SERVICES:
        env = environment(compose["services"][name])
        assert env["SERVICE"] == name
        assert env["CONSUL_HOST"] == "consul" and env["CONSUL_PORT"] == "8500"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert env["SERVICE_HOST"] == "0.0.0.0"
        assert env["MYSQL_HOST"] == "mysql"


def test_published_host_ports_are_unique(compose):
    seen: dict[int, str] = {}
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            for port in host_ports(entry):
                assert port not in seen, f"host port {port}: {seen.get(port)} and {name}"
                seen[port] = name
    assert {8001, 8002, 8003, 8089, 8500, 16686} <= set(seen)


def test_every_dependency_is_awaited_on_a_condition_it_can_meet(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}'s health"
            else:
                # A one-shot job: it must run once and exit, not be restarted.
                assert rule["condition"] == "service_completed_successfully", (name, target)
                assert services[target].get("restart") == "no", target


def test_app_services_have_a_healthcheck_and_wait_for_mysql_and_consul(compose):
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert "deploy.entrypoint" in " ".join(service["healthcheck"]["test"])
        for peer in ("mysql", "consul"):
            assert service["depends_on"][peer]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", SCALED)
def test_scaled_services_have_no_fixed_name_or_single_host_port(compose, name):
    service = compose["services"][name]
    assert "container_name" not in service
    ports = [host_ports(entry) for entry in service["ports"]]
    assert ports and all(len(each) >= 3 for each in ports), f"{name} must scale to 3"


def test_no_service_has_a_fixed_container_name(compose):
    for name, service in compose["services"].items():
        assert "container_name" not in service, name


def test_activity_proxy_keeps_port_8002_in_front_of_every_activity_replica(compose):
    services = compose["services"]
    proxy = services["activity_proxy"]
    assert {port for entry in proxy["ports"] for port in host_ports(entry)} == {8002}
    assert proxy["depends_on"]["activity_service"]["condition"] == "service_healthy"
    (mount,) = proxy["volumes"]
    source, target, mode = mount.split(":")
    assert (target, mode) == ("/etc/nginx/conf.d/default.conf", "ro")
    conf = (ROOT / source).read_text()
    listen = int(re.search(r"^\s*listen (\d+);", conf, re.M).group(1))
    assert {f"{listen}:{listen}"} == set(proxy["ports"])
    # The name sits in a variable, so Docker's DNS is asked again and new replicas are found;
    # a literal name would be resolved once, at start-up, to the replicas of that moment.
    assert re.search(r"^resolver 127\.0\.0\.11 valid=\d+s", conf, re.M)
    variable, host = re.search(r"set \$(\w+) (\w+);", conf).groups()
    port = int(re.search(rf"proxy_pass http://\${variable}:(\d+);", conf).group(1))
    assert (host, port) == ("activity_service", SERVICE_PORTS["activity_service"])
    # The per-address limits see the client, not the proxy: the proxy appends the client's
    # address and activity_service trusts one proxy; past it, only the host reaches a replica.
    assert re.search(r"proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;", conf)
    assert environment(services["activity_service"])["PROXIES_COUNT"] == "1"
    assert all(entry.startswith("127.0.0.1:") for entry in services["activity_service"]["ports"])
    # Browsers, curl and the load test reach activity_service through the proxy.
    assert environment(services["locust"])["LOCUST_HOST"] == f"http://activity_proxy:{listen}"


def test_mysql_keeps_its_data_in_a_named_volume(compose):
    mounts = compose["services"]["mysql"]["volumes"]
    assert "mysql-data:/var/lib/mysql" in mounts
    assert "mysql-data" in compose["volumes"]


def test_secrets_come_from_the_environment_never_from_the_file(compose):
    checked = 0
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET.search(key) and not key.endswith("_FILE"):
                assert value.startswith("${"), f"{name}: {key} is written into the file"
                checked += 1
    assert checked >= 8


def test_env_template_lists_every_variable_the_compose_file_reads(compose):
    template = (ROOT / ".env_template").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", template, re.M))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used and used <= listed, f"missing in .env_template: {sorted(used - listed)}"


def test_the_build_context_never_carries_local_secrets():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".local/", ".venv/"} <= set(ignored)


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with `dotenv` as the .env file."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if dotenv.get(name):
            return dotenv[name]
        if op == ":?":
            raise AssertionError(f"compose would refuse to start: {arg}")
        return arg

    return re.sub(r"\$\{([A-Z0-9_]+)(:[-?])?([^}]*)\}", one, value)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_service_reads_its_compose_environment_as_intended(compose, name):
    dotenv = {
        "MYSQL_ROOT_PASSWORD": "root-pw",
        "ADMIN_PASSWORD": "admin-pw",
        "TOKEN_PRIVATE_KEY": "a-pem",
        "SERVICE_TOKEN": "a-token",
    }
    env = {k: interpolate(v, dotenv) for k, v in environment(compose["services"][name]).items()}
    settings = SETTINGS[env["SERVICE"]].from_env(env)
    assert (settings.host, settings.port) == ("0.0.0.0", SERVICE_PORTS[name])
    assert (settings.mysql_host, settings.mysql_password) == ("mysql", "root-pw")
    assert settings.consul_host == "consul" and settings.otel_endpoint == "http://jaeger:4318"
    if name == "user_service":
        assert settings.admin_username == "admin" and settings.admin_password == "admin-pw"
        assert settings.token_private_key == "a-pem"
    else:
        assert settings.service_token == "a-token"
    assert settings.peer_urls == {n: f"http://{n}:{p}" for n, p in SERVICE_PORTS.items()}


def test_compose_refuses_to_start_without_the_change_me_secrets(compose):
    env = environment(compose["services"]["user_service"])
    with pytest.raises(AssertionError, match="set ADMIN_PASSWORD"):
        interpolate(env["ADMIN_PASSWORD"], {})
    with pytest.raises(AssertionError, match="set MYSQL_ROOT_PASSWORD"):
        interpolate(env["MYSQL_PASSWORD"], {})


def documented_variables() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env_template").read_text(), re.M))


# Documented in .env_template for someone other than the three services.
NOT_FOR_THE_SERVICES = {
    "MYSQL_ROOT_PASSWORD": "mysql",  # the services get it as MYSQL_PASSWORD
    "ACTIVITY_SERVICE_WORKERS": None,  # `make run` only; compose has SECKILL_WORKERS
}
USER_SERVICE_ONLY = {"TOKEN_PRIVATE_KEY", "TOKEN_PRIVATE_KEY_FILE"}
# Which proxy may name the client (Sanic's settings): only for a service a proxy stands before.
PROXY_SETTINGS = {"PROXIES_COUNT", "REAL_IP_HEADER", "FORWARDED_SECRET"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_variable_env_template_documents_reaches_the_services(compose, name):
    documented = documented_variables()
    expected = {v for v in documented if not v.startswith("LOCUST_")} - set(NOT_FOR_THE_SERVICES)
    expected -= PROXY_SETTINGS  # test_only_a_service_behind_a_proxy_trusts_one
    if name != "user_service":
        expected -= USER_SERVICE_ONLY
    missing = expected - set(environment(compose["services"][name]))
    assert not missing, f"{name} never gets {sorted(missing)}"
    assert len(expected) >= 40


def test_the_other_documented_variables_reach_mysql_and_locust(compose):
    documented = documented_variables()
    locust = set(environment(compose["services"]["locust"]))
    assert {v for v in documented if v.startswith("LOCUST_")} <= locust
    for variable, service in NOT_FOR_THE_SERVICES.items():
        assert variable in documented
        if service:
            assert variable in environment(compose["services"][service])


def test_only_user_service_gets_the_signing_key(compose):
    services = compose["services"]
    key_file = environment(services["user_service"])["TOKEN_PRIVATE_KEY_FILE"]
    key_dir = str(Path(key_file).parent)
    for name in APP_SERVICES:
        mounts = services[name]["volumes"]
        holds_key = [m for m in mounts if m.split(":")[1] == key_dir]
        if name == "user_service":
            assert holds_key and all(m.endswith(":ro") for m in mounts)
        else:
            assert not holds_key, f"{name} mounts the signing key"
            assert not USER_SERVICE_ONLY & set(environment(services[name])), name
            assert all(key_dir not in m for m in mounts)
    # The one-shot job writes the key into that volume and the credential into the shared one.
    command = services["secrets"]["command"]
    assert command[0] == "init-secrets" and command[2] == key_dir
    assert key_dir.split("/")[-1] in compose["volumes"]


def test_jaegers_in_memory_storage_is_capped(compose):
    env = environment(compose["services"]["jaeger"])
    assert int(env["MEMORY_MAX_TRACES"]) > 0


def nginx_location(conf: str, path: str) -> str:
    """The body of the location block nginx picks for path: an exact (=) match, else the
    longest prefix (this file has no regex locations: checked)."""
    blocks = re.findall(r"location\s+(=|\^~|~\*?)?\s*(\S+)\s*\{([^}]*)\}", conf)
    assert not any(kind.startswith("~") for kind, _, _ in blocks), "a regex location"
    for kind, prefix, body in blocks:
        if kind == "=" and path == prefix:
            return body
    matches = [
        (prefix, body) for kind, prefix, body in blocks if kind != "=" and path.startswith(prefix)
    ]
    return max(matches, key=lambda match: len(match[0]))[1]


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/metrics//", "/metrics/x", "/metricsx"])
def test_activity_proxy_refuses_every_path_under_metrics(path):
    conf = (ROOT / "deploy" / "activity-proxy.conf").read_text()
    assert "return 404;" in nginx_location(conf, path)
    assert "proxy_pass" in nginx_location(conf, "/activities/1")


def proxied_services(compose) -> set[str]:
    """The services an nginx of the file passes requests to (proxy_pass to their name)."""
    proxied = set()
    for service in compose["services"].values():
        for mount in service.get("volumes") or []:
            source = str(mount).split(":")[0]
            if source.endswith(".conf") and (ROOT / source).exists():
                conf = (ROOT / source).read_text()
                proxied |= set(re.findall(r"set \$\w+ (\w+);", conf))
                proxied |= set(re.findall(r"proxy_pass http://(\w+)[:/;]", conf))
    return proxied


@pytest.mark.parametrize("name", APP_SERVICES)
def test_only_a_service_behind_a_proxy_trusts_one(compose, name):
    service = compose["services"][name]
    trusted = {key: value for key, value in environment(service).items() if key in PROXY_SETTINGS}
    if not trusted:
        return
    # A proxy stands in front, and nobody past the host's loopback reaches the service around
    # it: otherwise a client could write the address the per-address limits count.
    assert name in proxied_services(compose), f"{name} trusts {sorted(trusted)} without a proxy"
    assert all(str(entry).startswith("127.0.0.1:") for entry in service.get("ports", []))


def test_the_services_published_directly_trust_no_proxy_header(compose):
    direct = [
        name
        for name in APP_SERVICES
        if any(
            not str(entry).startswith("127.0.0.1:")
            for entry in compose["services"][name].get("ports", [])
        )
    ]
    assert "user_service" in direct and "order_service" in direct
    for name in direct:
        assert not PROXY_SETTINGS & set(environment(compose["services"][name])), name
