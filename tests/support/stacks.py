"""A test's stack of real service processes: migrated and started in a fresh directory."""

from testkit.stack import Stack


def make_stack(tmp_path_factory, name: str, **env: str) -> Stack:
    stack = Stack(tmp_path_factory.mktemp(name), **env)
    stack.migrate()
    stack.start()
    return stack
