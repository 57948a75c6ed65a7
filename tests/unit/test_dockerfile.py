"""deploy/Dockerfile: hadolint-clean, and built the way the services need to run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            name = rest.split(" AS ")[-1] if " AS " in rest else rest
            current = found.setdefault(name, [])
        current.append((word, rest))
    return found


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install sanic\n")
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_multi_stage_on_a_python_base_pinned_to_a_patch_release():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 3
    external = [f.split()[0] for f in froms if f.split()[0].startswith("python:")]
    assert external and all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", i) for i in external)


@pytest.fixture(scope="module")
def service() -> list[tuple[str, str]]:
    return stages()["service"]


def test_the_service_image_runs_unbuffered_as_a_numeric_non_root_user(service):
    envs = " ".join(rest for word, rest in instructions() if word == "ENV")
    assert "PYTHONUNBUFFERED=1" in envs
    users = [rest for word, rest in service if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0].isdigit()


def test_the_service_image_checks_health_with_python(service):
    checks = [rest for word, rest in service if word == "HEALTHCHECK"]
    assert len(checks) == 1 and '"python", "-m", "deploy.entrypoint", "health"' in checks[0]
    entrypoint = [rest for word, rest in service if word == "ENTRYPOINT"]
    assert entrypoint == ['["python", "-m", "deploy.entrypoint"]']


def test_dependencies_install_before_any_code_is_copied():
    deps = stages()["deps"]
    runs = [i for i, (word, rest) in enumerate(deps) if word == "RUN" and "requirements" in rest]
    copies = [rest for word, rest in deps if word == "COPY"]
    assert runs and copies == ["requirements.txt /tmp/requirements.txt"]
    service = stages()["service"]
    first_copy = next(rest for word, rest in service if word == "COPY")
    assert first_copy.startswith("--from=deps")


def test_no_secret_is_baked_into_an_image():
    for word, rest in instructions():
        if word in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|TOKEN|PRIVATE_KEY", rest), rest


def test_the_load_image_pins_the_locust_of_requirements_dev():
    pinned = re.search(r"^locust==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.M)
    load = " ".join(rest for word, rest in stages()["load"] if word == "RUN")
    assert pinned and f"locust=={pinned.group(1)}" in load


def test_everything_the_entrypoint_imports_is_copied_into_the_image(service):
    copied = " ".join(rest for word, rest in service if word == "COPY")
    for package in ("common", "user_service", "activity_service", "order_service"):
        assert f"{package} ./{package}" in copied
    assert "deploy/entrypoint.py" in copied and "deploy/__init__.py" in copied
