"""`python -m reproduce.optimal --preset smoke`: the same code as the cpu preset."""

import json

import numpy as np
import pytest

from reproduce import optimal
from reproduce.configs.oracle import OPTIMAL_PRESETS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("optimal")
    return optimal.main(["--preset", "smoke", "--out", str(out)]), out


def test_files_and_schema(result):
    record, out = result
    for name in ("optimal.json", "optimal.md", "optimal_schedules.png", "optimal_share.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "optimal.json").read_text())
    assert saved["records"] == record["records"]
    assert saved["meta"]["preset"] == "smoke"
    config = OPTIMAL_PRESETS["smoke"]
    runs = len(config.resolutions) * len(config.samplers) * len(config.metrics) * len(config.nfes)
    assert len(saved["records"]) == runs * len(optimal.ROWS)
    text = (out / "optimal.md").read_text()
    assert "## KL, ddim" in text and "Where the optimum puts its end points" in text


def test_the_per_image_optimum_is_the_least_error(result):
    records = result[0]["records"]
    runs = {(r["resolution"], r["sampler"], r["metric"], r["nfe"]) for r in records}
    for run in runs:
        rows = [r for r in records if (r["resolution"], r["sampler"], r["metric"], r["nfe"]) == run]
        best = next(r for r in rows if r["schedule"] == "optimal_per_image")
        edm = next(r for r in rows if r["schedule"] == "edm")
        # Per image never worse than its start (EDM), whatever the iterations did.
        assert np.all(np.asarray(best["per_image"]) <= np.asarray(edm["per_image"]) * (1 + 1e-5))
        # On average better than every schedule, even after the smoke preset's 30 steps.
        for r in rows:
            assert best["error"] <= r["error"] * (1 + 1e-6), (run, r["schedule"])


def test_share_of_the_achievable_reduction(result):
    records = result[0]["records"]
    where = dict(resolution=32, sampler="ddim", metric="kl", nfe=8)
    assert optimal.share(records, "cosine", **where) == 0.0
    assert optimal.share(records, "optimal_per_image", **where) == pytest.approx(1.0)
    for name in optimal.ROWS:
        assert optimal.share(records, name, **where) <= 1.0 + 1e-9, name
