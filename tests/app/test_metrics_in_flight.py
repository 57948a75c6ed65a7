"""The in-flight gauge: read from the server's open connections when /metrics is asked."""

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from testkit.poll import eventually


async def in_flight(api) -> float:
    reply = await api.call("GET", "activity_service", "/metrics")
    assert reply.status == 200, reply.body
    for family in text_string_to_metric_families(reply.body):
        if family.name == "http_requests_in_flight":
            return family.samples[0].value
    raise AssertionError("no http_requests_in_flight in /metrics")


async def test_a_request_whose_body_is_still_coming_counts_until_its_client_leaves(api, stack):
    assert await in_flight(api) == 1  # the scrape itself
    # A POST whose head is in and whose body is not: in the handler's hands, not answered.
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports["activity_service"])
    writer.write(
        b"POST /activities/1/seckill HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{"
    )
    await writer.drain()

    def counted(expected: float):
        async def check() -> bool:
            return await in_flight(api) == expected

        return check

    await eventually(counted(2), 5, "the slow request is in flight")
    writer.close()  # the client leaves before its answer: it leaves the count as well
    await writer.wait_closed()
    await eventually(counted(1), 5, "only the scrape is in flight")
