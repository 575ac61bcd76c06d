"""`python -m local` under load and faults, over real sockets: reads beside writes, signals,
a dead emulator, restarts on the same port, two starts at once."""

import http.client
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import local_stack, seed_routes, stored_counts

READERS = 8
COUNTERS = 8
HITS_PER_COUNTER = 25


def test_readers_of_a_large_table_never_make_a_hit_fail(tmp_path):
    """8 clients reading /_stats?limit=1000 of a 10,000-route table over and over, while 8
    others count: every hit is answered 200 with its exact count (no write waits out the
    counter's 2 s DynamoDB timeout behind the reads)."""
    with local_stack(tmp_path) as stack:
        seed_routes(stack, {f"/seeded/{i}": i % 97 + 1 for i in range(10_000)})
        stop = threading.Event()
        reads_done = threading.Semaphore(0)
        read_statuses: list[int] = []

        def reader() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
            first = True
            while not stop.is_set():
                connection.request("GET", "/_stats?limit=1000")
                response = connection.getresponse()
                body = json.loads(response.read())
                read_statuses.append(response.status)
                assert response.status != 200 or len(body["routes"]) == 1000
                if first:
                    reads_done.release()
                    first = False
            connection.close()

        route = f"/counted/{uuid.uuid4().hex}"

        def counter(i: int) -> list[tuple[int, int | None]]:
            connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
            seen = []
            for _ in range(HITS_PER_COUNTER):
                connection.request("GET", f"{route}/{i}")
                response = connection.getresponse()
                body = json.loads(response.read())
                seen.append((response.status, body.get("count")))
            connection.close()
            return seen

        with ThreadPoolExecutor(READERS + COUNTERS) as pool:
            readers = [pool.submit(reader) for _ in range(READERS)]
            try:
                for _ in range(READERS):  # every reader is busy before the hits start
                    assert reads_done.acquire(timeout=120)
                hits = list(pool.map(counter, range(COUNTERS), timeout=300))
            finally:
                stop.set()
            for future in readers:
                future.result(timeout=120)

        expected = [(200, n) for n in range(1, HITS_PER_COUNTER + 1)]
        assert hits == [expected] * COUNTERS
        assert set(read_statuses) == {200}
        stored = stored_counts(stack)
        assert all(stored[f"{route}/{i}"] == HITS_PER_COUNTER for i in range(COUNTERS))
