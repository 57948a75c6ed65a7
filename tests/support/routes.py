"""Every (method, path) a fresh create_app() of a service routes, built in this process."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping

from testkit.stack import SETTINGS

# Sanic answers these on its own; OpenAPI leaves them out.
AUTOMATIC = {"HEAD", "OPTIONS"}


def app_routes(service: str, env: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    """The routes of the service's app built from env (create_app has no global side effects)."""
    factory = importlib.import_module(f"{service}.app").create_app
    app = factory(SETTINGS[service].from_env(env))
    found = set()
    for route in app.router.routes:
        path = "/" + re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", route.path)
        found.update((method, path) for method in route.methods - AUTOMATIC)
    return frozenset(found)
