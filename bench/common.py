"""Shared pieces of the benchmarks: paths, the fake AWS environment, rows, statistics."""

import functools
import importlib.util
import json
import os
import statistics
import sys
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace

from deployer.template_reading import parameter_values, resolve_ref
from local.events import proxy_event
from local.router import Router

ROOT = Path(__file__).resolve().parent.parent
COUNTER_PATH = ROOT / "handler" / "counter.py"
TABLE_NAME = "route-counter-bench"

# Same fake credentials as the tests: a benchmark can never reach a real AWS account.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "TABLE_NAME": TABLE_NAME,
}
UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB")


def bench_env() -> dict[str, str]:
    """The environment every benchmark (and every process it starts) runs with."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_AWS_ENV}
    env.update(FAKE_AWS_ENV)
    return env


def use_bench_env() -> None:
    """Apply bench_env() to this process (the runner does it once, before any benchmark)."""
    for key in UNSET_AWS_ENV:
        os.environ.pop(key, None)
    os.environ.update(FAKE_AWS_ENV)


def generated_template() -> dict:
    """The template generate.py writes, as a dict."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from generate import build_template, render

    return json.loads(render(build_template()))


def series_definition(template: dict) -> dict:
    """CreateTable arguments read from the generated template's series table."""
    props = template["Resources"]["SeriesTable"]["Properties"]
    return {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }


def aggregator_batching(template: dict) -> dict:
    """The aggregator mapping's BatchSize, MaximumBatchingWindowInSeconds and
    TumblingWindowInSeconds (0 when it has none), each a parameter's default when the
    template Refs one."""
    props = template["Resources"]["AggregatorStreamMapping"]["Properties"]
    defaults = parameter_values(template, {})
    settings = {}
    for name in ("BatchSize", "MaximumBatchingWindowInSeconds", "TumblingWindowInSeconds"):
        value = resolve_ref(props.get(name, 0), defaults)
        settings[name] = int(value)  # a whole-number parameter is text
    return settings


def table_definition() -> dict:
    """CreateTable arguments read from the generated template's own table."""
    props = generated_template()["Resources"]["CounterTable"]["Properties"]
    return {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }


def load_handler(source: str, name: str) -> ModuleType:
    """Import handler/<source>.py fresh, as Lambda imports index.py in a new container."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "handler" / f"{source}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_counter(name: str = "counter_bench") -> ModuleType:
    return load_handler("counter", name)


def api_event(path: str = "/", method: str = "GET") -> dict:
    """The REST API proxy event (payload 1.0) the local API builds for this request."""
    return proxy_event(default_router(), path, method)


@functools.cache
def default_router() -> Router:
    """The generated template's own API routes (local/router.py)."""
    from local.stack import default_template

    return Router(default_template())


def lambda_context() -> SimpleNamespace:
    return SimpleNamespace(
        aws_request_id=str(uuid.uuid4()),
        function_name="CounterFunction",
        memory_limit_in_mb=256,
        get_remaining_time_in_millis=lambda: 15000,
    )


def spread(values: list[float]) -> dict:
    """Median, min and max of a sample, plus its size."""
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def row(
    name: str,
    *,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    ratio: float | None = None,
    goal: str = "",
    passed: bool | None = None,
    status: str | None = None,
    note: str = "",
) -> dict:
    """One line of the results table.

    status is "pass" or "fail" against the goal, "info" for a labelled absolute number
    with no goal, or "error" for a benchmark that failed to run (then every number is None).
    """
    if status is None:
        status = "info" if passed is None else ("pass" if passed else "fail")
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio,
        "goal": goal,
        "status": status,
        "note": note,
    }
