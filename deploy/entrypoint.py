"""The container's entrypoint: one image, the service chosen by SERVICE.

python -m deploy.entrypoint serve          wait for MySQL, migrate, then exec the service
python -m deploy.entrypoint migrate        wait for MySQL, migrate, exit
python -m deploy.entrypoint health         exit 0 when this container's /health says ok
python -m deploy.entrypoint init-secrets DIR [KEY_DIR]
                                               create the service credential in DIR and the
                                               signing key in KEY_DIR (default DIR) once; never
                                               overwrite them, except a signing key that is not
                                               RSA-2048 or larger (an older Ed25519 key), which
                                               is replaced
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pymysql
from pydantic import ValidationError

from common.config import SERVICE_PORTS, Settings
from common.retry import Retrying
from common.runner import mysql_login
from deploy.services import SETTINGS
from user_service.settings import UserSettings


def log(message: str) -> None:
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)


def service_name() -> str:
    name = os.environ.get("SERVICE", "")
    if name not in SERVICE_PORTS:
        sys.exit(f"entrypoint: SERVICE must be one of {', '.join(SERVICE_PORTS)}, got {name!r}")
    return name


def wait_for_mysql(settings: Settings, timeout: float) -> None:
    """Poll until MySQL accepts a login: in compose it may still be initialising its volume."""
    where = f"{settings.mysql_user}@{settings.mysql_host}:{settings.mysql_port}"

    def waiting(_: Exception, number: int) -> None:
        if number == 1:
            log(f"waiting for MySQL at {where}")

    try:
        for attempt in Retrying(
            retry_on=pymysql.err.OperationalError, deadline=timeout, wait=lambda _: 1.0, log=waiting
        ):
            with attempt:
                mysql_login(settings, timeout=2)
    except pymysql.err.OperationalError as exc:
        sys.exit(f"entrypoint: MySQL at {where} did not answer within {timeout:g}s: {exc}")
    log(f"MySQL at {where} is up (attempt {attempt.number})")


def admin_problem(settings: UserSettings) -> str | None:
    """None when the admin could register and log in: the same rules as registration (the
    login format, then the password policy), else the rule broken."""
    from user_service.policy import password_problems
    from user_service.schemas import Credentials

    username, password = settings.admin_username, settings.admin_password

    try:
        Credentials(username=username, password=password)
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = f"ADMIN_{str(error['loc'][0]).upper()}"
        rule = error["msg"][0].lower() + error["msg"][1:]
        if variable == "ADMIN_USERNAME":
            rule += " (letters, digits, _ . -)"
        return f"{variable} breaks the rule every login follows: {rule}; change it in .env"
    weak = password_problems(
        password, username, settings.password_min_length, settings.password_min_score
    )
    if weak:
        return (
            f"ADMIN_PASSWORD breaks the password policy: it {weak[0]}; change it in .env"
            " (an admin that already exists keeps the password it was created with)"
        )
    return None


def migrate(name: str) -> None:
    result = subprocess.run([sys.executable, "-m", name, "migrate"], check=False)
    if result.returncode != 0:
        sys.exit(f"entrypoint: migrating {name} failed with exit code {result.returncode}")
    log(f"{name} database is up to date")


def health(name: str) -> int:
    port = os.environ.get(f"{name.upper()}_PORT") or str(SERVICE_PORTS[name])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


def init_secrets(directory: Path, key_directory: Path | None = None) -> None:
    """Generate what user_service signs with and what services show each other, once.

    The signing key may go to a directory of its own: only user_service mounts it.
    """
    from common.auth import ensure_signing_key

    key_directory = key_directory or directory
    for path in {directory, key_directory}:
        path.mkdir(parents=True, exist_ok=True)
    done = ensure_signing_key(key_directory / "token_key.pem")
    if done:
        log(done)
    token_file = directory / "service_token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
        log(f"generated the service credential in {token_file}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.entrypoint")
    parser.add_argument("command", choices=["serve", "migrate", "health", "init-secrets"])
    parser.add_argument("directory", nargs="?", type=Path, help="for init-secrets")
    parser.add_argument(
        "key_directory", nargs="?", type=Path, help="for init-secrets: the signing key's"
    )
    args = parser.parse_args(argv)
    if args.command == "init-secrets":
        if args.directory is None:
            parser.error("init-secrets needs a directory")
        init_secrets(args.directory, args.key_directory)
        return
    name = service_name()
    if args.command == "health":
        sys.exit(health(name))
    settings = SETTINGS[name].from_env()
    if isinstance(settings, UserSettings) and settings.admin_username and settings.admin_password:
        problem = admin_problem(settings)
        if problem:
            sys.exit(f"entrypoint: {problem}")
    wait_for_mysql(settings, float(os.environ.get("MYSQL_WAIT_TIMEOUT", "120")))
    migrate(name)
    if args.command == "serve":
        log(f"starting {name} on {settings.host}:{settings.port}")
        os.execv(sys.executable, [sys.executable, "-m", name, "serve"])


if __name__ == "__main__":
    main()
