"""The deployer's smoke test against the real counter, served by the local stack."""

import uuid

import pytest

from deployer.smoke import smoke_test
from tests.conftest import in_one_period, local_stack


@pytest.mark.parametrize("rate_limit", ["0", "1"])
def test_the_smoke_test_passes_on_the_real_counter_with_and_without_a_rate_limit(
    tmp_path, rate_limit
):
    limit = ["--param", f"RateLimit={rate_limit}", "--param", "RateLimitWindowSeconds=86400"]

    def smoke(running) -> list[str]:
        said: list[str] = []
        smoke_test(f"{running.url}/smoke-{uuid.uuid4().hex}/", said.append)
        return said

    with local_stack(tmp_path, *limit) as running:
        # The window is the UTC day (86400 s from the epoch): the two hits in one day, or a
        # second hit just after midnight is the new day's first (counted 1, then 2).
        said = in_one_period(lambda t: t // 86400, lambda: smoke(running))

    expected = "counted 1, then 2." if rate_limit == "0" else "refused with 429 and RateLimit"
    assert expected in said[-1]
