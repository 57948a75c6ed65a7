import pytest

from deployment.stack import Stack


def make_stack(tmp_path_factory, name: str, **env: str):
    stack = Stack(tmp_path_factory.mktemp(name), **env)
    stack.migrate()
    stack.start()
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One running stack shared by tests that leave the processes alone."""
    stack = make_stack(tmp_path_factory, "stack")
    yield stack
    stack.stop()
    stack.drop_databases()


@pytest.fixture
def own_stack(tmp_path_factory):
    """A stack of a test's own, for tests that kill or restart services."""
    stacks = []

    def start(**env: str) -> Stack:
        stacks.append(make_stack(tmp_path_factory, "own", **env))
        return stacks[-1]

    yield start
    for s in stacks:
        s.kill()
        s.drop_databases()
