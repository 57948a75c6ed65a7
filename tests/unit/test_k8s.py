"""deploy/k8s: each overlay renders with kubectl kustomize, every object passes
kubernetes-validate --strict, and the wiring holds (env, probes, Secrets, image, ports).

Nothing here needs a cluster; what a cluster would add is in docs/kubernetes.md.
"""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from common.config import SERVICE_PORTS
from tests.support.k8s_checks import CHECKS, check_schema, documented_names, names_read
from tests.support.k8s_manifests import (
    K8S,
    OVERLAYS,
    ROOT,
    VARIANTS,
    container_env,
    containers,
    kubectl,
    mounted_files,
    of_kind,
    pod_spec,
    real_secret_names,
    render,
    secret_tree,
)

DEPLOYMENTS = {name.replace("_", "-"): name for name in SERVICE_PORTS}
SCALED = ("activity-service", "order-service")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    try:
        kubectl()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # never a skip: a CI without kubectl must say so
    return secret_tree(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, list[dict]]:
    return {variant: render(tree, variant) for variant in VARIANTS}


@pytest.mark.parametrize("overlay", VARIANTS)
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_overlay_passes(rendered, overlay, check):
    assert CHECKS[check](rendered[overlay], overlay) == []


# A manifest broken on purpose must fail the check meant to catch it.
BREAKAGES = [
    ("schema", "base/order-service.yaml", "maxUnavailable: 1", "maxUnavailble: 1", "maxUnavailble"),
    (
        "env",
        "base/user-service.yaml",
        "enableServiceLinks: false",
        "enableServiceLinks: true",
        "service links would set",
    ),
    (
        "schema",
        "base/user-service.yaml",
        "replicas: 1\n",
        'replicas: "one"\n',
        "is not of type 'integer'",
    ),
    ("env", "base/settings.env", "MYSQL_HOST=", "MYSQL_HSOT=", "MYSQL_HSOT"),
    ("env", "base/settings.env", "SECKILL_BATCH_MAX=200\n", "", "SECKILL_BATCH_MAX unset"),
    (
        "settings",
        "base/settings.env",
        "ORDER_SERVICE_URL=http://order-service:8003",
        "ORDER_SERVICE_URL=http://orders:8003",
        "orders is not a rendered Service",
    ),
    (
        "settings",
        "overlays/dev/settings.env",
        "MYSQL_HOST=mysql",
        "MYSQL_HOST=mysql-0",
        "mysql-0 is not a rendered Service",
    ),
    (
        "settings",
        "overlays/dev/settings.env",
        "REDIS_URL=redis://redis:6379/0",
        "REDIS_URL=redis://cache:6379/0",
        "cache is not a rendered Service",
    ),
    (
        "settings",
        "overlays/dev/settings.env",
        "REDIS_URL=redis://redis:6379/0\n",
        "",
        "no REDIS_URL",
    ),
    (
        "settings",
        "base/user-service.yaml",
        "path: token_key.pem",
        "path: token.pem",
        "TOKEN_PRIVATE_KEY_FILE=/var/lib/seckill/secrets/token_key.pem is no file",
    ),
    ("probes", "base/activity-service.yaml", "path: /health", "path: /ready", "/ready"),
    (
        "probes",
        "base/order-service.yaml",
        "livenessProbe:\n            httpGet:\n              path: /livez",
        "livenessProbe:\n            httpGet:\n              path: /health",
        "livenessProbe on /health",
    ),
    (
        "secrets",
        "base/activity-service.yaml",
        "name: seckill-service-token",
        "name: seckill-service-tokens",
        "seckill-service-tokens",
    ),
    ("secrets", "overlays/dev/load-job.yaml", "fsGroup: 10001", "", "cannot read admin-password"),
    (
        "image_and_ports",
        "base/order-service.yaml",
        "containerPort: 8003",
        "containerPort: 8080",
        "8080",
    ),
    (
        "image_and_ports",
        "base/user-service.yaml",
        "runAsUser: 10001",
        "runAsUser: 1000",
        "1000:10001",
    ),
    (
        "image_and_ports",
        "base/activity-service.yaml",
        'args: ["migrate"]',
        'args: ["migrat"]',
        "migrat is no entrypoint command",
    ),
    (
        "security",
        "base/activity-service.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "writable root",
    ),
    (
        "security",
        "base/user-service.yaml",
        "mountPath: /tmp",
        "mountPath: /scratch",
        "without a writable /tmp",
    ),
    (
        "resources",
        "base/order-service.yaml",
        "memory: 512Mi",
        "ephemeral-storage: 1Gi",
        "no limits for memory",
    ),
    (
        "metrics_scrape",
        "base/order-service.yaml",
        'prometheus.io/port: "8003"',
        'prometheus.io/port: "9100"',
        "prometheus.io/port is '9100'",
    ),
    (
        "load_job",
        "overlays/dev/kustomization.yaml",
        "LOCUST_ATTEMPTS=3",
        "LOCUST_ATEMPTS=3",
        "LOCUST_ATEMPTS",
    ),
]


@pytest.mark.parametrize(("check", "path", "old", "new", "expected"), BREAKAGES)
def test_a_broken_manifest_fails_its_check(tree, tmp_path, check, path, old, new, expected):
    broken = tmp_path / "k8s"
    shutil.copytree(tree, broken)
    text = (broken / path).read_text()
    assert old in text, f"{path} no longer has {old!r}: update this breakage"
    (broken / path).write_text(text.replace(old, new, 1))
    problems = CHECKS[check](render(broken, "dev"), "dev")
    assert any(expected in problem for problem in problems), problems


def test_strict_schema_validation_works_offline_and_rejects_unknown_fields(rendered):
    deployment = of_kind(rendered["prod"], "Deployment")["order-service"]
    container = pod_spec(deployment)["containers"][0]
    container["readinessprobe"] = container["readinessProbe"]
    assert any("readinessprobe" in problem for problem in check_schema([deployment], "prod"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_a_deployment_service_and_disruption_budget(rendered, overlay):
    docs = rendered[overlay]
    for name in DEPLOYMENTS:
        labels = pod_spec_labels(of_kind(docs, "Deployment")[name])
        for kind in ("Service", "PodDisruptionBudget"):
            selector = of_kind(docs, kind)[name]["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selector.items() <= labels.items(), f"{kind} {name} selects no pod of it"


def pod_spec_labels(deployment: dict) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_prod_scales_activity_and_order_service_on_cpu(rendered):
    docs = rendered["prod"]
    deployments = of_kind(docs, "Deployment")
    assert deployments["user-service"]["spec"]["replicas"] == 1
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(autoscalers) == set(SCALED)
    for name in SCALED:
        assert deployments[name]["spec"]["replicas"] == 2
        hpa = autoscalers[name]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert hpa["spec"]["minReplicas"] == 2 < hpa["spec"]["maxReplicas"]
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # a utilisation target needs a CPU request to be a share of
        for container in pod_spec(deployments[name])["containers"]:
            assert container["resources"]["requests"]["cpu"]


def test_dev_runs_one_of_each_with_mysql_jaeger_and_the_load_job(rendered):
    docs = rendered["dev"]
    assert {d["spec"]["replicas"] for d in of_kind(docs, "Deployment").values()} == {1}
    assert of_kind(docs, "HorizontalPodAutoscaler") == {}
    mysql = of_kind(docs, "StatefulSet")["mysql"]
    assert mysql["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    mounts = pod_spec(mysql)["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/mysql"} in mounts
    assert "jaeger" in of_kind(docs, "Deployment")
    # MySQL's root password is the one the services log in with
    spec = pod_spec(mysql)
    [server] = spec["containers"]
    root_password = mounted_files(docs, spec, server)[
        container_env(docs, server)["MYSQL_ROOT_PASSWORD_FILE"]
    ]
    for name in DEPLOYMENTS:
        spec = pod_spec(of_kind(docs, "Deployment")[name])
        [service] = spec["containers"]
        env = container_env(docs, service)
        assert env["MYSQL_USER"] == "root"
        assert mounted_files(docs, spec, service)[env["MYSQL_PASSWORD_FILE"]] == root_password
    assert "seckill-load" in of_kind(docs, "Job")


def test_dev_runs_redis_and_every_service_shares_it_with_its_password(rendered):
    docs = rendered["dev"]
    redis = of_kind(docs, "Deployment")["redis"]
    spec = pod_spec(redis)
    [server] = spec["containers"]
    assert server["readinessProbe"] and server["livenessProbe"]
    assert of_kind(docs, "Service")["redis"]["spec"]["ports"][0]["port"] == 6379
    # the password Redis asks for is the one every service is given
    asked = mounted_files(docs, spec, server)["/var/run/secrets/redis/redis_password"]
    assert asked and "/var/run/secrets/redis/redis_password" in " ".join(server["command"])
    for name in DEPLOYMENTS:
        spec = pod_spec(of_kind(docs, "Deployment")[name])
        [service] = spec["containers"]
        env = container_env(docs, service)
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert mounted_files(docs, spec, service)[env["REDIS_PASSWORD_FILE"]] == asked, name


def test_prod_reaches_redis_by_address_with_its_password_from_a_secret(rendered):
    docs = rendered["prod"]
    assert "redis" not in of_kind(docs, "Deployment") and "redis" not in of_kind(docs, "Service")
    for name in DEPLOYMENTS:
        spec = pod_spec(of_kind(docs, "Deployment")[name])
        [service] = spec["containers"]
        env = container_env(docs, service)
        host = urlsplit(env["REDIS_URL"]).hostname
        assert "." in host and host not in of_kind(docs, "Service"), env["REDIS_URL"]
        password_file = env["REDIS_PASSWORD_FILE"]
        assert password_file in mounted_files(docs, spec, service), name
    assert "seckill-redis-password" in " ".join(of_kind(docs, "Secret"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_in_an_init_container_before_each_service(rendered, overlay):
    for name, service in DEPLOYMENTS.items():
        spec = pod_spec(of_kind(rendered[overlay], "Deployment")[name])
        [migrate] = spec["initContainers"]
        [main] = spec["containers"]
        assert migrate["args"] == ["migrate"] and migrate["image"] == main["image"]
        assert {"name": "SERVICE", "value": service} in migrate["env"]


def test_prod_reaches_mysql_by_address_with_consul_optional(rendered):
    docs = rendered["prod"]
    settings = next(iter(of_kind(docs, "ConfigMap").values()))["data"]
    assert "." in settings["MYSQL_HOST"] and settings["MYSQL_HOST"] not in of_kind(docs, "Service")
    assert "CONSUL_HOST" in settings and not of_kind(docs, "StatefulSet")
    assert not of_kind(docs, "Job")
    for deployment in of_kind(docs, "Deployment").values():
        for container in containers(pod_spec(deployment)):
            assert not container["image"].endswith((":latest", ":dev"))


def test_dev_finds_peers_through_service_names_not_consul(rendered):
    settings = of_kind(rendered["dev"], "ConfigMap")
    [data] = [c["data"] for name, c in settings.items() if name.startswith("seckill-settings")]
    assert data["CONSUL_HOST"] == ""
    for name, port in SERVICE_PORTS.items():
        assert data[f"{name.upper()}_URL"] == f"http://{name.replace('_', '-')}:{port}"


def test_every_secret_file_has_an_example_and_is_never_checked_in():
    names = real_secret_names()
    assert {
        "token_key.pem",
        "service_token",
        "mysql_password",
        "admin_password",
        "redis_password",
    } <= set(names)
    tracked = subprocess.run(
        ["git", "ls-files", str(K8S)], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if path.rsplit("/", 1)[-1] in names]
    for overlay in OVERLAYS:
        secrets = K8S / "overlays" / overlay / "secrets"
        assert {p.name for p in secrets.glob("*.example")} == {f"{n}.example" for n in names}
        real = [str(secrets / name) for name in names]
        ignored = subprocess.run(
            ["git", "check-ignore", *real], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
        assert sorted(ignored) == sorted(real), "a real secret file is not git-ignored"


def test_the_kustomizations_generate_the_secrets_from_those_files():
    for overlay in OVERLAYS:
        text = (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
        for name in real_secret_names():
            assert f"- secrets/{name}\n" in text, f"{overlay} does not generate {name}"


def test_the_consul_component_turns_on_registration_with_the_pod_ip(rendered):
    docs = rendered["prod-consul"]
    [settings] = of_kind(docs, "ConfigMap").values()
    assert settings["data"]["CONSUL_HOST"] == "consul-server.consul"
    for name in DEPLOYMENTS:
        [service] = pod_spec(of_kind(docs, "Deployment")[name])["containers"]
        advertise = {e["name"]: e for e in service["env"]}["SERVICE_ADVERTISE_HOST"]
        assert advertise["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_a_pod_registering_another_address_fails_the_settings_check(tree, tmp_path):
    broken = tmp_path / "k8s"
    shutil.copytree(tree, broken)
    manifest = broken / "base" / "order-service.yaml"
    manifest.write_text(manifest.read_text().replace("status.podIP", "status.hostIP"))
    problems = CHECKS["settings"](render(broken, "prod-consul"), "prod-consul")
    assert problems == ["order-service: registers field"]


def test_the_variables_checked_cover_every_service_setting_env_template_documents():
    read = set().union(*(names_read(name) for name in SERVICE_PORTS))
    assert read >= {"MYSQL_HOST", "SERVICE_TOKEN_FILE", "TOKEN_PRIVATE_KEY", "SECKILL_BATCH_MAX"}
    assert documented_names() - read == set()
