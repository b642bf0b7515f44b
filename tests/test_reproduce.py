"""`python -m reproduce.all --preset smoke`: the paper-table modules on a sliver, the
same code as the cpu and paper presets."""

import json

import numpy as np
import pytest

from reproduce import all as reproduce_all, table1
from reproduce.configs.suite import PRESETS


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    docs = tmp_path_factory.mktemp("docs")
    reproduce_all.main(
        ["--preset", "smoke", "--out", str(out), "--docs", str(docs), "--no-progress"]
    )
    return out, docs


def _load(out, name):
    return json.loads((out / f"{name}.json").read_text())


def test_every_module_writes_json_markdown_and_figures(smoke):
    out, docs = smoke
    for name in ("table1", "ablations", "resolution", "figures"):
        result = _load(out, name)
        assert result["meta"]["preset"] == "smoke"
        assert result["meta"]["command"].startswith(f"python -m reproduce.{name}")
        assert (out / f"{name}.md").read_text().strip()
    for png in (
        "table1",
        "ablations",
        "resolution",
        "figures_rapsd",
        "figures_bounds",
        "figures_schedules",
        "figures_samples_nfe4",
    ):
        assert (out / f"{png}.png").stat().st_size > 1000
        assert (docs / "assets" / "reproduce" / f"{png}.png").is_file()
    page = (docs / "reproduce.md").read_text()
    assert "python -m reproduce.all --preset smoke" in page
    for title in ("Table 1", "Ablations", "Resolution", "Figures", "Claims under test"):
        assert title in page


def test_table1_records_and_claims(smoke):
    out, _ = smoke
    result, suite = _load(out, "table1"), PRESETS["smoke"]
    records = result["records"]
    assert len(records) == 2 * suite.seeds * len(suite.nfes)
    assert {(r["variant"], r["seed"], r["nfe"]) for r in records} == {
        (m, s, n) for m in table1.METHODS for s in range(suite.seeds) for n in suite.nfes
    }
    for r in records:
        assert all(np.isfinite(r[m]) and r[m] >= 0 for m in table1.METRICS)
    # Real images are closer to the reference than 6-step models' samples.
    for metric in table1.METRICS:
        assert result["floor"][metric] < min(r[metric] for r in records)
    claims = result["claims"]
    for metric in ("fd", "pixel_fd"):
        c = claims[metric]
        assert len(c["reductions"]) == suite.seeds
        assert c["holds_15_percent"] == (c["reduction_mean"] >= 0.15)
        # Each per-seed reduction is recomputable from the records.
        at = claims["nfe"]
        value = {(r["variant"], r["seed"]): r[metric] for r in records if r["nfe"] == at}
        expected = [
            1 - value["spectral", s] / value["sid2_baseline", s] for s in range(suite.seeds)
        ]
        np.testing.assert_allclose(c["reductions"], expected)


def test_rerun_reuses_runs_and_cached_scores(smoke):
    out, _ = smoke
    before = _load(out, "table1")["records"]
    again = table1.main(["--preset", "smoke", "--out", str(out), "--no-progress"])
    assert again["records"] == before
    assert again["meta"]["seconds"] < 0.5 * max(_load(out, "ablations")["meta"]["seconds"], 1)


def test_ablation_groups(smoke):
    out, _ = smoke
    records = _load(out, "ablations")["records"]
    groups = {r["group"] for r in records}
    assert groups == {
        "schedule kind",
        "per-instance vs global",
        "bounds",
        "schedules at generation",
        "guidance",
        "TDAS",
    }
    by_name = {r["variant"]: r for r in records}
    # The full method is shared by every group and evaluated once (cached).
    full = [r for r in records if r["variant"] == "mixed (full method)"]
    assert len(full) == len(groups) and len({r["fd"] for r in full}) == 1
    # Different generation schedules and TDAS change the samples.
    assert by_name["TDAS on"]["pixel_fd"] != by_name["mixed (full method)"]["pixel_fd"]
    assert by_name["true (oracle)"]["pixel_fd"] != by_name["class mean"]["pixel_fd"]


def test_resolution_covers_every_size(smoke):
    out, _ = smoke
    result, suite = _load(out, "resolution"), PRESETS["smoke"]
    sizes = {(r["resolution"], r["variant"]) for r in result["records"]}
    assert sizes == {(s, m) for s in suite.resolutions for m in table1.METHODS}
    assert set(result["floor"]) == {str(s) for s in suite.resolutions}


def test_bad_arguments():
    with pytest.raises(SystemExit):
        table1.main(["--preset", "nope"])
    with pytest.raises(SystemExit):
        table1.main(["--preset", "smoke", "--seeds", "0"])


def test_inception_features_path(tmp_path):
    """The paper preset's FID path, on formula weights (tests/data) and smoke data."""
    import dataclasses
    import sys
    from pathlib import Path

    import jax

    import spectral_diffusion as sd
    from reproduce._experiment import Reference
    from spectral_diffusion._inception import state_dict

    sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
    from fid_weights_formula import formula_weights

    shapes = {
        k: v.shape for k, v in state_dict(sd.metrics.FIDInception(key=jax.random.key(0))).items()
    }
    np.savez(tmp_path / "fid.npz", **formula_weights(shapes))
    suite = dataclasses.replace(
        PRESETS["smoke"],
        features="inception",
        reference=dataclasses.replace(PRESETS["smoke"].reference, patches_per_image=1),
    )
    reference = Reference(suite, suite.train, fid_weights=tmp_path / "fid.npz")
    assert reference.reference_features.shape == (15, 2048)
    same = reference.scores(reference.images)
    assert same["fd"] == pytest.approx(0.0, abs=1e-6) and same["pixel_fd"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert reference.floor["fd"] > 0
