"""ClientIdentity end to end on the local stack (docs/clients.md): API keys made with the
deployer's keys command, checked as API Gateway checks them, the monthly quota, a revoked
key; and a header identity. Real HTTP to `python -m local`."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

from deployer.smoke import smoke_test
from tests.conftest import (
    FAKE_CREDENTIALS,
    ROOT,
    counter_table_name,
    emulator_client,
    in_one_period,
    local_stack,
    stored_counts,
)


def request(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=20
        ) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def keys(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    """./deploy.sh keys ... --local, as deploy.sh runs it (python -m local keys ...)."""
    return subprocess.run(
        [sys.executable, "-m", "local", "keys", "--state-dir", str(tmp_path / "state"), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**FAKE_CREDENTIALS, "PATH": "/usr/bin:/bin"},
    )


def created(tmp_path, name: str) -> tuple[str, str]:
    """(id, value) of a new key, as create prints them."""
    made = keys(tmp_path, "create", name)
    assert made.returncode == 0, made.stderr
    key_id = re.search(r"\(id (\w+)\)", made.stdout)[1]
    value = re.search(r"^value: (\S+)$", made.stdout, flags=re.MULTILINE)[1]
    return key_id, value


def last_client(stack, route: str) -> str | None:
    item = emulator_client(stack, "dynamodb").get_item(
        TableName=counter_table_name(stack), Key={"route": {"S": route}}
    )["Item"]
    return item.get("lastClient", {}).get("S")


def test_api_keys_are_checked_counted_and_limited_as_api_gateway_does(tmp_path):
    params = ("--param", "ClientIdentity=apikey", "--param", "UsageQuotaPerMonth=3")
    with local_stack(tmp_path, *params, "--param", "Analytics=off") as stack:
        assert "api keys:  required" in stack.output.read_text()
        # No key, or one nobody has: API Gateway's own 403, before the function
        assert request(f"{stack.url}/hello") == (403, {"message": "Forbidden"})
        assert request(f"{stack.url}/hello", {"x-api-key": "x" * 40}) == (
            403,
            {"message": "Forbidden"},
        )
        # The deployer's smoke test: refused without a key, nothing counted
        said: list[str] = []
        smoke_test(f"{stack.url}/", said.append, client_identity="apikey")
        assert said[-1].endswith("refused by API Gateway (403 Forbidden).")
        assert stored_counts(stack) == {}

        acme, acme_value = created(tmp_path, "acme")
        status, body = request(f"{stack.url}/hello", {"x-api-key": acme_value})
        assert (status, body["count"]) == (200, 1)
        assert last_client(stack, "/hello") == acme
        # The stats need no key (they follow PrivateStats) and are not counted
        status, body = request(f"{stack.url}/_stats")
        assert status == 200 and [r["route"] for r in body["routes"]] == ["/hello"]

        # The quota: 3 a month per key (the UTC calendar month), a key's third request is its
        # last; the four requests within one month (a month's end would begin it again).
        quota_keys, served = [], {}

        def quota_run() -> list:
            name = f"quota-{len(quota_keys)}"
            key_id, value = created(tmp_path, name)
            quota_keys.append([key_id, name, "enabled"])
            routes = [f"/{name}/{n}" for n in range(4)]
            answers = [request(f"{stack.url}{route}", {"x-api-key": value}) for route in routes]
            for route, (status, _) in zip(routes, answers, strict=True):
                served.update({route: 1} if status == 200 else {})
            return answers

        answers = in_one_period(lambda t: time.gmtime(t)[:2], quota_run)
        assert [status for status, _ in answers[:3]] == [200, 200, 200]
        assert answers[3] == (429, {"message": "Limit Exceeded"})
        assert stored_counts(stack) == {"/hello": 1, **served}  # a refusal is not counted

        globex, globex_value = created(tmp_path, "globex")
        assert request(f"{stack.url}/hello", {"x-api-key": globex_value})[0] == 200
        assert last_client(stack, "/hello") == globex
        revoked = keys(tmp_path, "revoke", globex)
        assert revoked.returncode == 0, revoked.stderr
        assert request(f"{stack.url}/hello", {"x-api-key": globex_value}) == (
            403,
            {"message": "Forbidden"},
        )
        assert stored_counts(stack)["/hello"] == 2

        listed = keys(tmp_path, "list")
        assert listed.returncode == 0, listed.stderr
        rows = [line.split()[:3] for line in listed.stdout.splitlines()[1:]]
        # oldest first; keys made in the same second (createdDate's resolution) in any order
        assert sorted(rows, key=lambda row: row[1]) == [
            [acme, "acme", "enabled"],
            [globex, "globex", "revoked"],
            *quota_keys,
        ]
        assert acme_value not in listed.stdout and globex_value not in listed.stdout
        output = stack.output.read_text()
    assert acme_value not in output and globex_value not in output  # never logged
    # The stack stopped: keys --local says there is none to talk to
    gone = keys(tmp_path, "list")
    assert gone.returncode == 1 and "no local stack route-counter is running" in gone.stderr


def test_a_header_identity_is_required_and_written_locally(tmp_path):
    params = ("--param", "ClientIdentity=header:X-Client-Id", "--param", "Analytics=off")
    with local_stack(tmp_path, *params) as stack:
        status, body = request(f"{stack.url}/hello")
        assert status == 401 and "X-Client-Id header is required" in body["error"]
        said: list[str] = []
        smoke_test(f"{stack.url}/", said.append, client_identity="header:X-Client-Id")
        assert said[-1].endswith("refused with 401.")
        assert stored_counts(stack) == {}
        assert request(f"{stack.url}/hello", {"x-client-id": "acme"})[0] == 200
        assert last_client(stack, "/hello") == "acme"
        # keys are for ClientIdentity apikey only
        refused = keys(tmp_path, "create", "acme")
        assert refused.returncode == 1 and "--param ClientIdentity=apikey" in refused.stderr


def test_usage_per_client_end_to_end_with_a_header_identity(tmp_path):
    """The real counter names each hit's client (X-Client-Id), the real aggregator counts it
    in the client's buckets, and /_stats/usage answers each client's month, in JSON and CSV,
    its total equal to the sum of its days and of its routes."""
    import collections

    params = ("--param", "ClientIdentity=header:X-Client-Id")
    sent = {"acme": {"/a": 3, "/b": 1}, "globex": {"/a": 2}}
    # (client, month, route) -> hits: each hit is in the month of its own time, the counter's
    # answer's lastSeen (a month's end may pass between the hits, or before the reads).
    made: collections.Counter = collections.Counter()
    with local_stack(tmp_path, *params) as stack:
        for client, routes in sent.items():
            for route, times in routes.items():
                for _ in range(times):
                    status, answer = request(f"{stack.url}{route}", {"x-client-id": client})
                    assert status == 200
                    made[(client, answer["lastSeen"][:7], route)] += 1
        months = sorted({month for _, month, _ in made})
        want = collections.Counter()
        for (client, month, _), n in made.items():
            want[(client, month)] += n
        deadline = time.monotonic() + 60
        while True:
            totals = {}
            for month in months:
                status, every = request(f"{stack.url}/_stats/usage?month={month}")
                for c in (every or {}).get("clients", []):
                    totals[(c["client"], month)] = c["hits"]
            if totals == want:
                break
            assert time.monotonic() < deadline, (status, every, totals)
            time.sleep(0.2)
        acme_months = [month for client, month in want if client == "acme"]
        for month in acme_months:
            status, acme = request(f"{stack.url}/_stats/usage?client=acme&month={month}")
            assert status == 200 and acme["hits"] == want[("acme", month)]
            assert {r["route"]: r["hits"] for r in acme["routes"]} == {
                route: n for (c, m, route), n in made.items() if (c, m) == ("acme", month)
            }
            assert sum(d["hits"] for d in acme["days"]) == acme["hits"]
            with urllib.request.urlopen(
                f"{stack.url}/_stats/usage?client=acme&month={month}&format=csv", timeout=20
            ) as answer:
                assert answer.headers["Content-Type"].startswith("text/csv")
                rows = answer.read().decode().splitlines()
            total = f",{acme['hits']}"
            assert any(row.startswith("total,") and row.endswith(total) for row in rows), rows
        assert sum(want[("acme", month)] for month in acme_months) == 4
