"""`python -m reproduce.oracle --preset smoke`: the same code as the cpu preset."""

import json

import numpy as np
import pytest

from reproduce import oracle
from reproduce.configs.oracle import PRESETS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle")
    return oracle.main(["--preset", "smoke", "--out", str(out)]), out


def test_files_and_schema(result):
    record, out = result
    for name in ("oracle.json", "oracle.md", "oracle_w2.png", "oracle_kl.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "oracle.json").read_text())
    assert saved["records"] == record["records"]
    assert saved["meta"]["preset"] == "smoke" and "jax" in saved["meta"]["versions"]
    config = PRESETS["smoke"]
    keys = {"resolution", "schedule", "sampler", "nfe", "w2", "kl", "n_images"}
    assert all(set(r) == keys for r in saved["records"])
    assert len(saved["records"]) == len(config.resolutions) * len(config.samplers) * len(
        config.nfes
    ) * len(oracle.SCHEDULES)
    assert all(np.isfinite(r["w2"]) and r["w2"] >= 0 for r in saved["records"])
    assert "### Summary: W2" in (out / "oracle.md").read_text()


def test_errors_fall_with_nfe_for_ddim(result):
    records = result[0]["records"]
    for size in PRESETS["smoke"].resolutions:
        for name in oracle.SCHEDULES:
            rows = sorted(
                (
                    r
                    for r in records
                    if r["resolution"] == size and r["schedule"] == name and r["sampler"] == "ddim"
                ),
                key=lambda r: r["nfe"],
            )
            assert rows[-1]["kl"] < rows[0]["kl"], (size, name)


def test_monte_carlo_agrees_with_closed_form(result):
    rows = result[0]["monte_carlo"]
    assert rows
    for r in rows:
        # 128 samples per frequency: a few per cent of sampling noise on the metrics.
        assert r["kl_monte_carlo"] == pytest.approx(r["kl_closed_form"], rel=0.1, abs=5e-3)
        assert r["w2_monte_carlo"] == pytest.approx(r["w2_closed_form"], rel=0.25, abs=5e-3)
