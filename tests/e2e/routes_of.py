"""Print, as JSON, every (method, path) a fresh create_app() of one service routes.

Run as `python -m tests.e2e.routes_of <service>` with the service's environment; a
process of its own keeps the app's logging and sanic-ext state out of the test process.
"""

import importlib
import json
import re
import sys

# Sanic answers these on its own; OpenAPI leaves them out.
AUTOMATIC = {"HEAD", "OPTIONS"}


def routes(service: str) -> list[tuple[str, str]]:
    factory = importlib.import_module(f"{service}.app").create_app
    app = factory()  # the service's settings from the environment
    found = set()
    for route in app.router.routes:
        path = "/" + re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", route.path)
        for method in route.methods - AUTOMATIC:
            found.add((method, path))
    return sorted(found)


if __name__ == "__main__":
    json.dump(routes(sys.argv[1]), sys.stdout)
