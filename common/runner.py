"""`python -m <service> [serve|migrate]`: the command line every service shares."""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from functools import partial
from pathlib import Path

import peewee
import pymysql
from sanic import Sanic
from sanic.worker.loader import AppLoader

from common.config import Settings
from common.deadlines import RequestDeadlineProtocol
from common.redis import redis_problem
from common.telemetry.logs import setup_logging

# pymysql's codes for "nothing answered at that address" (refused, unknown host, lost, timeout).
_UNREACHABLE = {2003, 2005, 2006, 2013}
_ACCESS_DENIED = 1045
# prometheus-client reads it when first imported: set before that (prepare_metrics_dir).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def mysql_problem_text(settings: Settings, exc: Exception) -> str:
    """One line saying what a failed MySQL login means and where to fix it."""
    where = f"{settings.mysql_host}:{settings.mysql_port}"
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in _UNREACHABLE:
        return f"cannot reach MySQL at {where}: is it running? see MYSQL_HOST/MYSQL_PORT in .env"
    if code == _ACCESS_DENIED:
        return (
            f"MySQL at {where} denied access to user {settings.mysql_user!r}: "
            "set MYSQL_USER/MYSQL_PASSWORD in .env"
        )
    return f"MySQL at {where} failed: {exc.args[-1] if exc.args else exc}"


def mysql_login(settings: Settings, timeout: float) -> None:
    """Log in to settings' MySQL and out again; pymysql's error if that fails."""
    pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        connect_timeout=timeout,
    ).close()


def mysql_problem(settings: Settings) -> str | None:
    """None when settings' MySQL login works, else one line naming the cause and the fix."""
    try:
        mysql_login(settings, timeout=5)
    except pymysql.err.MySQLError as exc:
        return mysql_problem_text(settings, exc)
    return None


def port_problem(settings: Settings) -> str | None:
    """None when the service's port is free to listen on, else one line naming the fix."""
    variable = f"{settings.service_name.upper()}_PORT"
    with socket.socket() as sock:
        # As the server will: a port left in TIME_WAIT by a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {settings.port} ({settings.service_name}) is already in use: "
                    f"stop what holds it, or set {variable} in .env to another port"
                )
            return (
                f"cannot listen on {settings.host}:{settings.port} ({settings.service_name}): "
                f"{exc.strerror}; see SERVICE_HOST/{variable} in .env"
            )
    return None


def main(settings_class: type[Settings], argv: list[str] | None = None) -> None:
    """Run the service whose settings settings_class reads (the class names the service)."""
    service_name = settings_class.service_name
    parser = argparse.ArgumentParser(prog=f"python -m {service_name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = settings_class.from_env()
    setup_logging(service_name, settings.log_level)
    if args.command == "migrate":
        models = importlib.import_module(f"{service_name}.models")
        try:
            models.run_migrations(settings)
        except (pymysql.err.MySQLError, peewee.OperationalError) as exc:
            sys.exit(f"{service_name}: {mysql_problem_text(settings, exc)}")
        return
    # Checked before Sanic starts: its workers would each fail with a traceback instead.
    problem = (
        port_problem(settings) or mysql_problem(settings) or asyncio.run(redis_problem(settings))
    )
    if problem:
        sys.exit(f"{service_name}: {problem}")
    if settings.metrics == "off":
        # No metric files at all: prometheus-client writes them whenever the variable is set.
        given = os.environ.pop(METRICS_DIR_ENV, None)
        if given:
            empty_metrics_dir(Path(given))
        serve(service_name, settings)
        return
    made = prepare_metrics_dir(service_name)
    try:
        if settings.metrics_port is not None:
            serve_metrics_port(settings)
        serve(service_name, settings)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def prepare_metrics_dir(service_name: str) -> Path | None:
    """Before the workers start, and before anything imports prometheus_client: the
    directory of the workers' metric files (docs/metrics.md). A given
    PROMETHEUS_MULTIPROC_DIR is emptied (files of an earlier run would be counted again);
    otherwise a fresh one is made, set for the workers, and returned to be removed at exit."""
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        empty_metrics_dir(directory)
        return None
    directory = Path(tempfile.mkdtemp(prefix=f"{service_name}-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(directory)
    return directory


def empty_metrics_dir(directory: Path) -> None:
    for path in directory.glob("*.db"):
        path.unlink()


def serve_metrics_port(settings: Settings) -> None:
    """METRICS_PORT: /metrics from a thread of the main process, off the service's port."""
    from prometheus_client import start_http_server

    from common.telemetry.metrics import multiprocess_registry

    host = settings.metrics_host or settings.host
    start_http_server(settings.metrics_port, addr=host, registry=multiprocess_registry())


def build_app(service_name: str, settings: Settings) -> Sanic:
    """The factory each worker runs: this process's logging first, then the service's app."""
    setup_logging(service_name, settings.log_level)
    app = importlib.import_module(f"{service_name}.app").create_app(settings)
    app.after_server_start(worker_ready)
    return app


async def worker_ready(app: Sanic) -> None:
    """One line from each worker once it serves (at any LOG_LEVEL): make run's banner waits for
    one per worker."""
    logging.getLogger("seckill.workers").info("worker ready", extra={"pid": os.getpid()})


def serve(service_name: str, settings: Settings) -> None:
    loader = AppLoader(factory=partial(build_app, service_name, settings))
    app = loader.load()
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        single_process=settings.workers == 1,
        access_log=False,
        motd=False,
        protocol=RequestDeadlineProtocol,
    )
    if settings.workers == 1:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)
    logging.getLogger("seckill").info("%s stopped", service_name)
    sys.stdout.flush()
