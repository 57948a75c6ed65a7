"""Render deploy/k8s with kubectl kustomize and look inside: the helpers of test_k8s.py.

The overlays' Secrets are generated from files the operator makes; they are never checked
in. `secret_tree` copies the manifests to a scratch directory and makes each real file there
from its `.example` (the signing key is a real fresh RSA key, as the services parse it).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# What is rendered and checked: the overlays, and prod with the Consul component, as an
# operator would include it (the overlay for that is written into the scratch copy).
VARIANTS = (*OVERLAYS, "prod-consul")
PROD_WITH_CONSUL = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../prod
components:
  - ../../components/consul
"""
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}
# What a fieldRef to the pod's IP stands for when the env is resolved here.
POD_IP = "10.1.2.3"

Doc = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError(
            "kubectl is not on PATH: the Kubernetes manifests cannot be rendered. Install "
            "kubectl 1.27 or newer (it carries kustomize), e.g. the Debian/Ubuntu package "
            "kubectl, or https://kubernetes.io/docs/tasks/tools/"
        )
    return found


def secret_tree(destination: Path) -> Path:
    """A copy of deploy/k8s with every secret file made from its .example, and the
    prod-consul overlay."""
    tree = destination / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns(*real_secret_names()))
    for example in tree.rglob("*.example"):
        real = example.with_suffix("")
        if real.name.endswith(".pem"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            real.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        else:
            shutil.copyfile(example, real)
    (tree / "overlays" / "prod-consul").mkdir()
    (tree / "overlays" / "prod-consul" / "kustomization.yaml").write_text(PROD_WITH_CONSUL)
    return tree


def real_secret_names() -> list[str]:
    """The names of the operator's secret files, wherever an .example stands for one."""
    return sorted({example.stem for example in K8S.rglob("*.example")})


def render(tree: Path, overlay: str) -> list[Doc]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(tree / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_spec(workload: Doc) -> Doc:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (doc for doc in docs if doc["kind"] in WORKLOADS)


def containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def config_data(docs: list[Doc], name: str) -> dict[str, str]:
    config = of_kind(docs, "ConfigMap").get(name)
    return {} if config is None else dict(config.get("data", {}))


def secret_data(docs: list[Doc], name: str) -> dict[str, str] | None:
    secret = of_kind(docs, "Secret").get(name)
    if secret is None:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment the container starts with: envFrom first, env entries over it.

    A reference to a ConfigMap or Secret, or a key of one, that the render lacks raises.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if name not in of_kind(docs, "ConfigMap"):
                raise LookupError(f"envFrom names ConfigMap {name}, which is not rendered")
            env.update(config_data(docs, name))
        else:
            name = source["secretRef"]["name"]
            data = secret_data(docs, name)
            if data is None:
                raise LookupError(f"envFrom names Secret {name}, which is not generated")
            env.update(data)
    for entry in container.get("env", []):
        env[entry["name"]] = env_value(docs, entry)
    return env


def env_value(docs: list[Doc], entry: Doc) -> str:
    if "valueFrom" not in entry:
        return str(entry.get("value", ""))
    source = entry["valueFrom"]
    if "fieldRef" in source:
        return POD_IP if source["fieldRef"]["fieldPath"] == "status.podIP" else "field"
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        data = config_data(docs, ref["name"])
        if ref["key"] not in data:
            raise LookupError(f"{entry['name']}: ConfigMap {ref['name']} has no {ref['key']}")
        return data[ref["key"]]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        data = secret_data(docs, ref["name"]) or {}
        if ref["key"] not in data:
            raise LookupError(f"{entry['name']}: Secret {ref['name']} has no {ref['key']}")
        return data[ref["key"]]
    raise LookupError(f"{entry['name']}: a valueFrom this test does not know: {source}")


def volume_files(docs: list[Doc], volume: Doc) -> dict[str, str] | None:
    """The files a secret, projected or configMap volume holds (relative path -> text).

    None for a volume of another kind (emptyDir, a claim); a missing Secret raises.
    """
    if "secret" in volume:
        return _items(docs, "Secret", volume["secret"]["secretName"], volume["secret"])
    if "configMap" in volume:
        return _items(docs, "ConfigMap", volume["configMap"]["name"], volume["configMap"])
    if "projected" in volume:
        files: dict[str, str] = {}
        for source in volume["projected"]["sources"]:
            for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if key in source:
                    files.update(_items(docs, kind, source[key]["name"], source[key]))
        return files
    return None


def _items(docs: list[Doc], kind: str, name: str, source: Mapping) -> dict[str, str]:
    data = secret_data(docs, name) if kind == "Secret" else of_kind(docs, kind).get(name)
    if data is None:
        raise LookupError(f"a volume names {kind} {name}, which is not generated")
    if kind == "ConfigMap":
        data = data.get("data", {})
    if "items" not in source:
        return dict(data)
    files = {}
    for item in source["items"]:
        if item["key"] not in data:
            raise LookupError(f"a volume wants key {item['key']} of {kind} {name}: not there")
        files[item["path"]] = data[item["key"]]
    return files


def mounted_files(docs: list[Doc], spec: Doc, container: Doc) -> dict[str, str]:
    """Absolute path in the container -> text, for every file a mount of it provides."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    files = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            continue  # a StatefulSet's volumeClaimTemplate: data, not configuration
        held = volume_files(docs, volumes[mount["name"]])
        for relative, text in (held or {}).items():
            files[str(PurePosixPath(mount["mountPath"]) / relative)] = text
    return files


def writable_mounts(spec: Doc, container: Doc) -> set[str]:
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    return {
        mount["mountPath"]
        for mount in container.get("volumeMounts", [])
        if not mount.get("readOnly") and "emptyDir" in volumes.get(mount["name"], {})
    }
