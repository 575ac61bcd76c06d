"""The deployer's smoke test against the real counter, served by the local stack."""

import uuid

import pytest

from deployer.smoke import smoke_test
from tests.conftest import local_stack


@pytest.mark.parametrize("rate_limit", ["0", "1"])
def test_the_smoke_test_passes_on_the_real_counter_with_and_without_a_rate_limit(
    tmp_path, rate_limit
):
    said: list[str] = []
    limit = ["--param", f"RateLimit={rate_limit}", "--param", "RateLimitWindowSeconds=86400"]
    with local_stack(tmp_path, *limit) as running:
        smoke_test(f"{running.url}/smoke-{uuid.uuid4().hex}/", said.append)

    expected = "counted 1, then 2." if rate_limit == "0" else "refused with 429 and RateLimit"
    assert expected in said[-1]
