"""The local run: secrets once, migrations, then the three services in the foreground.

python -m deployment.local run        # what `make run` does
python -m deployment.local migrate    # create databases and tables only
python -m deployment.local env        # print the environment the services get
python -m deployment.local load ARGS  # Locust against the local run, admin from the secrets
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from common.auth import ensure_signing_key
from common.config import SERVICE_PORTS

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
SERVICES = ("user_service", "activity_service", "order_service")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def ensure_local_secrets() -> dict[str, str]:
    """Generate the signing key, service credential and dev admin once, into .local/ (ignored)."""
    LOCAL.mkdir(exist_ok=True)
    key_file = LOCAL / "token_key.pem"
    done = ensure_signing_key(key_file)
    if done:
        print(done, file=sys.stderr)
    env_file = LOCAL / "secrets.env"
    values = read_env_file(env_file)
    if not values:
        values = {
            "TOKEN_PRIVATE_KEY_FILE": str(key_file),
            "SERVICE_TOKEN": secrets.token_urlsafe(32),
            "ADMIN_USERNAME": "admin",
            "ADMIN_PASSWORD": secrets.token_urlsafe(12),
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)
    return values


def service_env() -> dict[str, str]:
    """Defaults < generated local secrets < .env < the caller's environment."""
    env = dict(ensure_local_secrets())
    for layer in (read_env_file(ROOT / ".env"), os.environ):
        env.update({key: value for key, value in layer.items() if value})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def env_for(service: str, env: dict[str, str]) -> dict[str, str]:
    """activity_service takes the seckill traffic: it runs ACTIVITY_SERVICE_WORKERS workers."""
    if service == "activity_service" and "SECKILL_WORKERS" not in env:
        return {**env, "SECKILL_WORKERS": env.get("ACTIVITY_SERVICE_WORKERS", "2")}
    return env


def migrate(env: dict[str, str]) -> None:
    for service in SERVICES:
        subprocess.run([sys.executable, "-m", service, "migrate"], env=env, cwd=ROOT, check=True)


def run(env: dict[str, str]) -> int:
    migrate(env)
    generated = read_env_file(LOCAL / "secrets.env")
    if env.get("ADMIN_PASSWORD") == generated.get("ADMIN_PASSWORD"):
        print(
            f"\n  development admin: {env['ADMIN_USERNAME']} / {env['ADMIN_PASSWORD']}"
            f"  (from {LOCAL / 'secrets.env'})\n",
            flush=True,
        )
    children = {
        name: subprocess.Popen([sys.executable, "-m", name], env=env_for(name, env), cwd=ROOT)
        for name in SERVICES
    }
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping the others", flush=True)
                exit_code, stopping = child.returncode or 1, True
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return exit_code


def load(env: dict[str, str], args: list[str]) -> None:
    """Replace this process with Locust, given the admin account the services were started with."""
    locustfile = str(ROOT / "deployment" / "locust" / "locustfile.py")
    urls = {
        name: env.get(f"{name.upper()}_URL")
        or f"http://127.0.0.1:{env.get(f'{name.upper()}_PORT', port)}"
        for name, port in SERVICE_PORTS.items()
    }
    env.setdefault("LOCUST_USER_URL", urls["user_service"])
    env.setdefault("LOCUST_ORDER_URL", urls["order_service"])
    argv = [sys.executable, "-m", "locust", "-f", locustfile, "--host", urls["activity_service"]]
    argv += args
    os.execve(sys.executable, argv, env)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deployment.local")
    parser.add_argument("command", choices=["run", "migrate", "env", "load"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="for load: locust's options")
    args = parser.parse_args()
    env = service_env()
    if args.command == "load":
        load(env, args.args)
    elif args.command == "migrate":
        migrate(env)
    elif args.command == "env":
        for key in sorted(read_env_file(LOCAL / "secrets.env")):
            print(f"{key}={env[key]}")
    else:
        sys.exit(run(env))


if __name__ == "__main__":
    main()
