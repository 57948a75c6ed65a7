"""`python -m <service> [serve|migrate]`: the command line every service shares."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from common.config import Settings
from common.logs import setup_logging


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
        models.run_migrations(settings)
        return
    serve(service_name, settings)


def serve(service_name: str, settings: Settings) -> None:
    module = importlib.import_module(f"{service_name}.app")
    loader = AppLoader(factory=partial(module.create_app, settings))
    app = loader.load()
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        single_process=settings.workers == 1,
        access_log=False,
        motd=False,
    )
    if settings.workers == 1:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)
    logging.getLogger("seckill").info("%s stopped", service_name)
    sys.stdout.flush()
