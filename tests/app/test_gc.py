"""What a worker made to start is out of the garbage collector's sight once it serves."""

import gc


async def test_a_started_service_has_frozen_its_start_up_objects(api):
    # The stack's apps have started (after_server_start ran): freeze moved every object of
    # the process then to the permanent generation, which no collection walks.
    reply = await api.call("GET", "activity_service", "/livez")
    assert reply.status == 200
    assert gc.get_freeze_count() > 10_000
