"""Benchmark 5: the read endpoint (GET /_stats) over a large table, page by page.

handler/stats.py runs in-process against moto (mock_aws) with a table seeded by
BatchWriteItem. For a page of `limit` routes it measures the handler's wall time (median
of several calls), the items DynamoDB read (ScannedCount of every Scan, from botocore's
`after-call` hook), the Scan calls, and the peak memory Python allocated during the call
(tracemalloc; it includes moto's own work, which runs in this process). The same page is
read from a table of SMALL and of LARGE routes: a page's cost must not grow with the table,
so the LARGE/SMALL ratio of items read must be 1 (the time ratio is printed beside it).

Pages after the first are measured too, but only for their counts: moto finds a page's
ExclusiveStartKey by walking the table from its start, so in moto a deep page's time grows
with its position; DynamoDB seeks to the key. Items read per page stay `limit` either way.
"""

import contextlib
import io
import json
import statistics
import time
import tracemalloc

import boto3
from moto import mock_aws

from bench.common import TABLE_NAME, api_event, lambda_context, load_handler, row, table_definition

SMALL, LARGE = 1_000, 10_000
SMALL_QUICK, LARGE_QUICK = 1_000, 1_500
LIMITS = (100, 1000)
REPEATS, REPEATS_QUICK = 5, 1


def seed(table: str, start: int, stop: int) -> None:
    """Routes /r/<start>.. /r/<stop-1>, each with a count, 25 per BatchWriteItem."""
    client = boto3.client("dynamodb")
    for first in range(start, stop, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "route": {"S": f"/r/{i}"},
                        "count": {"N": str(1 + i % 97)},
                        "firstSeen": {"S": "2026-11-28T00:00:00Z"},
                        "lastSeen": {"S": "2026-11-28T05:00:00Z"},
                    }
                }
            }
            for i in range(first, min(first + 25, stop))
        ]
        client.batch_write_item(RequestItems={table: requests})


class ScanMeter:
    """Scan calls and items read (ScannedCount) by one client."""

    def __init__(self, client) -> None:
        self.calls = 0
        self.scanned = 0
        client.meta.events.register("after-call.dynamodb.Scan", self._on_scan)

    def _on_scan(self, parsed, **_) -> None:
        self.calls += 1
        self.scanned += parsed.get("ScannedCount", 0)

    def reset(self) -> None:
        self.calls = self.scanned = 0


def get_page(stats, limit: int, token: str | None = None) -> dict:
    event = api_event("/_stats")
    event["queryStringParameters"] = {"limit": str(limit), **({"next": token} if token else {})}
    with contextlib.redirect_stdout(io.StringIO()):
        result = stats.handler(event, lambda_context())
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])


def measure(stats, meter: ScanMeter, limit: int, repeats: int, token: str | None = None) -> dict:
    """One page's time (median), items read, Scan calls and peak traced memory."""
    times = []
    for _ in range(repeats):
        meter.reset()
        started = time.perf_counter()
        page = get_page(stats, limit, token)
        times.append(time.perf_counter() - started)
    scanned, calls = meter.scanned, meter.calls
    tracemalloc.start()
    get_page(stats, limit, token)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "ms": statistics.median(times) * 1000,
        "routes": len(page["routes"]),
        "scanned": scanned,
        "scan_calls": calls,
        "peak_kib": peak / 1024,
        "next": page["next"],
    }


def run(quick: bool = False) -> dict:
    small, large = (SMALL_QUICK, LARGE_QUICK) if quick else (SMALL, LARGE)
    repeats = REPEATS_QUICK if quick else REPEATS
    results: dict[str, dict] = {}
    with mock_aws():
        boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
        stats = load_handler("stats", "stats_bench")
        meter = ScanMeter(stats.dynamodb)
        seed(TABLE_NAME, 0, small)
        for limit in LIMITS:
            results[f"{small}/{limit}"] = measure(stats, meter, limit, repeats)
        seed(TABLE_NAME, small, large)
        for limit in LIMITS:
            results[f"{large}/{limit}"] = first = measure(stats, meter, limit, repeats)
            # The next page, as a client following "next" gets it: counts only (see above).
            results[f"{large}/{limit}/page2"] = measure(stats, meter, limit, 1, first["next"])

    rows = []
    for limit in LIMITS:
        a, b = results[f"{small}/{limit}"], results[f"{large}/{limit}"]
        page2 = results[f"{large}/{limit}/page2"]
        ratio = b["scanned"] / a["scanned"]
        sized = (
            all(r["routes"] == r["scanned"] == limit and r["scan_calls"] == 1 for r in (a, b))
            and page2["routes"] == page2["scanned"] <= limit
        )
        rows.append(
            row(
                f"Read endpoint: page of {limit}, items read at {large} vs {small} routes",
                value=float(b["scanned"]),
                unit="items",
                baseline=float(a["scanned"]),
                baseline_name=f"the same page at {small} routes",
                ratio=ratio,
                goal="= 1",
                passed=ratio == 1.0 and sized,
                note=f"time {b['ms']:.1f} ms vs {a['ms']:.1f} ms (x{b['ms'] / a['ms']:.2f}); "
                f"Scan calls {b['scan_calls']} vs {a['scan_calls']}; peak memory "
                f"{b['peak_kib']:.0f} KiB vs {a['peak_kib']:.0f} KiB; page 2 at {large}: "
                f"{page2['scanned']} items read in {page2['scan_calls']} Scan",
            )
        )
        rows.append(
            row(
                f"Read endpoint: page of {limit}, handler time at {large} routes",
                value=b["ms"],
                unit="ms",
                baseline=a["ms"],
                baseline_name=f"the same page at {small} routes",
                ratio=b["ms"] / a["ms"],
                status="info",
                note=f"in-process moto; median of {repeats}; peak memory {b['peak_kib']:.0f} KiB",
            )
        )
    return {"rows": rows, "details": {"small": small, "large": large, "pages": results}}
