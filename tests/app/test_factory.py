"""create_app has no process-wide side effects: several apps can be built in one process."""

import importlib
import logging

import pytest

from testkit.stack import SERVICES, SETTINGS

LOGGERS = ("", "sanic.root", "sanic.error", "sanic.access", "sanic.server", "seckill.access")


def logging_state() -> list[tuple]:
    return [
        (name, logger.level, tuple(logger.handlers), logger.propagate, logger.disabled)
        for name in LOGGERS
        for logger in [logging.getLogger(name)]
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_create_app_leaves_the_process_logging_alone(databases, service):
    """Logging is the runner's to configure (common/runner.py), not the factory's."""
    factory = importlib.import_module(f"{service}.app").create_app
    before = logging_state()

    first = factory(SETTINGS[service].from_env(databases.env))
    second = factory(SETTINGS[service].from_env(databases.env))

    assert logging_state() == before
    assert first is not second and first.router is not second.router
