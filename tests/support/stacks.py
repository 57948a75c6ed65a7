"""A test's stack of real service processes: migrated and started in a fresh directory."""

from testkit.stack import Stack


def make_stack(tmp_path_factory, name: str, **env: str) -> Stack:
    stack = Stack(tmp_path_factory.mktemp(name), **env)
    stack.migrate()
    try:
        stack.start()
    except BaseException:
        # A service that did not become healthy: the fixture never sees this stack, so the
        # processes already started would outlive the test.
        stack.kill()
        stack.drop_databases()
        raise
    return stack
