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
    for name in ("table1", "denoising", "ablations", "resolution", "figures"):
        result = _load(out, name)
        assert result["meta"]["preset"] == "smoke"
        assert result["meta"]["command"].startswith(f"python -m reproduce.{name}")
        assert (out / f"{name}.md").read_text().strip()
    for png in (
        "table1",
        "denoising",
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
    for title in ("Table 1", "Per-logSNR", "Ablations", "Resolution", "Figures", "Claims"):
        assert title in page
    # The measured block of the Paper map page, regenerated in place.
    paper_map = (docs / "paper_map.md").read_text()
    assert paper_map.count(reproduce_all.BEGIN) == 1 and "≥ 15% lower FD" in paper_map
    block = reproduce_all.measured(out)
    reproduce_all.update_block(docs / "paper_map.md", "first")
    reproduce_all.update_block(docs / "paper_map.md", block)
    assert (docs / "paper_map.md").read_text() == paper_map.replace(
        paper_map.split(reproduce_all.BEGIN)[1].split(reproduce_all.END)[0], f"\n{block}\n"
    )


def test_docs_only_rebuilds_the_pages_from_partial_results(smoke, tmp_path):
    out, _ = smoke
    partial = tmp_path / "out"
    partial.mkdir()
    for name in ("table1", "denoising"):
        for suffix in (".json", ".md", ".png"):
            (partial / f"{name}{suffix}").write_bytes((out / f"{name}{suffix}").read_bytes())
    docs = tmp_path / "docs"
    reproduce_all.main(
        ["--preset", "smoke", "--out", str(partial), "--docs", str(docs), "--docs-only"]
    )
    page = (docs / "reproduce.md").read_text()
    assert "Table 1" in page and "## Ablations" not in page
    assert "not run yet: `python -m reproduce.ablations --preset smoke`" in page
    table1_command = _load(out, "table1")["meta"]["command"]
    assert f"From `{table1_command}`" in (docs / "paper_map.md").read_text()


def test_table1_plan_records_and_claims(smoke):
    out, _ = smoke
    result, suite = _load(out, "table1"), PRESETS["smoke"]
    records = result["records"]
    reference_n = 15 * suite.reference.patches_per_image
    # Every arm and seed at the claims' NFEs on the whole reference set ("claim"-only
    # arms at the first of them); every arm at every NFE on the reduced subset for
    # reduced_seeds.
    at, target = table1.claim_nfes(suite.nfes)
    full = [(r["variant"], r["seed"], r["nfe"]) for r in records if r["n"] == reference_n]
    expected = set()
    for arm in table1.ARMS:
        nfes = {"both": {at, target}, "claim": {at}, "none": set()}[arm.full]
        expected |= {(arm.name, s, n) for s in range(suite.seeds) for n in nfes}
    assert sorted(full) == sorted(expected)  # and no duplicates
    reduced = [(r["variant"], r["seed"], r["nfe"]) for r in records if r["n"] != reference_n]
    assert {r["n"] for r in records if r["n"] != reference_n} == {suite.reduced_n}
    assert sorted(reduced) == sorted(
        (arm.name, s, n)
        for arm in table1.ARMS
        for s in range(suite.reduced_seeds)
        for n in table1.sweep_nfes(arm, suite.nfes)
    )
    # The transfer arms sweep up to the claim's NFE only.
    transfer = next(a for a in table1.ARMS if a.name == "spectral_optimal")
    assert table1.sweep_nfes(transfer, (8, 16, 32, 64, 128)) == (8, 16, 32)
    assert len(records) == len(table1.plan(suite))
    for r in records:
        assert all(np.isfinite(r[m]) and r[m] >= 0 for m in table1.METRICS)
    # Real images are closer to the reference than 6-step models' samples.
    for metric in table1.METRICS:
        assert result["floor"][metric] < min(r[metric] for r in records if r["n"] == reference_n)
    claims = result["claims"]
    for metric in ("fd", "pixel_fd"):
        c = claims[metric]
        # Each per-seed paired value is recomputable from the records.
        value = {
            (r["variant"], r["seed"], r["nfe"]): r[metric] for r in records if r["n"] == reference_n
        }
        seeds = range(suite.seeds)
        expected = [1 - value["spectral", s, at] / value["sid2_baseline", s, at] for s in seeds]
        np.testing.assert_allclose(c["reduction"]["values"], expected)
        half = [1 - value["spectral", s, at] / value["sid2_baseline", s, target] for s in seeds]
        np.testing.assert_allclose(c["half_steps"]["values"], half)
        red = c["reduction"]
        assert red["low"] <= red["mean"] <= red["high"]
        assert red["verdict"] == table1.verdict(red, table1.REDUCTION_CLAIM)
    # The baseline along the spectral schedules is the baseline's model with the
    # spectral run's schedules: different samples from both.
    at_full = {(r["variant"], r["seed"]): r["pixel_fd"] for r in records if r["nfe"] == at}
    for s in range(suite.seeds):
        assert at_full["baseline_on_spectral", s] != at_full["sid2_baseline", s]
        # The transfer arm: the spectral model along other (oracle-optimal) schedules.
        assert at_full["spectral_optimal", s] != at_full["spectral", s]
    at_fd = {
        (r["variant"], r["seed"]): r["fd"]
        for r in records
        if r["n"] == reference_n and r["nfe"] == at
    }
    expected = [1 - at_fd["spectral_optimal", s] / at_fd["spectral", s] for s in range(suite.seeds)]
    transfer = claims["fd"]["optimal_vs_spectral"]["spectral_optimal"]["values"]
    np.testing.assert_allclose(transfer, expected)
    assert set(claims["fd"]["optimal_vs_spectral"]) == {
        "spectral_optimal",
        "spectral_optimal_fixed_ends",
    }


def test_verdicts_and_intervals():
    ci = table1.interval([0.2, 0.25, 0.3])
    assert ci["low"] < 0.25 < ci["high"] and ci["std"] == pytest.approx(0.05)
    # t(0.975, 2) = 4.303: the half-width of the 95% interval of 3 values.
    assert ci["high"] - ci["mean"] == pytest.approx(4.303 * 0.05 / np.sqrt(3), rel=1e-3)
    assert table1.verdict(ci, 0.15) == "inconclusive"
    assert table1.verdict(table1.interval([0.30, 0.31, 0.32]), 0.15) == "holds"
    assert table1.verdict(table1.interval([0.01, 0.02, 0.03]), 0.15) == "does not hold"
    assert table1.verdict(table1.interval([0.3]), 0.15) == "inconclusive (one seed)"


def test_denoising_diagnostics(smoke):
    out, _ = smoke
    result, suite = _load(out, "denoising"), PRESETS["smoke"]
    records = result["records"]
    assert {(r["variant"], r["seed"]) for r in records} == {
        (name, s) for name in table1.TRAINED for s in range(suite.seeds)
    }
    for r in records:
        assert r["logsnr"] == list(suite.diagnostic_logsnrs)
        mse = np.asarray(r["mse"])
        # Even an untrained v-predicting model is nearly exact at high logSNR (its x_hat
        # is about z there): the error at the cleanest level is far below the noisiest.
        assert np.all(mse > 0) and mse[-1] < 0.1 * mse[0]
        expected = np.trapezoid(mse / (1 + np.exp(-np.asarray(r["logsnr"]))), r["logsnr"])
        assert r["J"] == pytest.approx(expected)
        assert [c["step"] for c in r["curve"]] == [3, 6]
        # The learning curve's last point is the final model (on curve_n images).
        assert r["curve"][-1]["n"] == suite.curve_n
    stats = result["noise_levels"]
    assert set(stats) == set(table1.TRAINED)
    for s in stats.values():
        assert sum(s["shares"]) == pytest.approx(1.0)
        assert 1.0 <= s["effective_batch_size"] <= s["batch_size"]
    # The literal reading puts far more examples at lambda >= 4 (where w ~ 0) and has
    # the smallest effective batch.
    literal, default = stats["spectral_schedule_proposal"], stats["spectral"]
    assert literal["shares"][-1] > 2 * default["shares"][-1]
    assert literal["effective_batch_size"] < default["effective_batch_size"]


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
        "training proposal",
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
    assert {r["n"] for r in result["records"]} == {suite.reduced_n}


def test_gpu_preset_runs_at_smoke_size(tmp_path):
    """The accelerator preset (not run here: no accelerator) through the same code at
    the smoke preset's sizes: its network structure, schedule and loss train and
    sample, and table1's plan covers every arm."""
    from reproduce._runs import Runner, Variant
    from reproduce.configs.suite import shrink

    suite = shrink(PRESETS["gpu"], PRESETS["smoke"])
    gpu = PRESETS["gpu"]
    assert len(suite.train.model.kwargs["stage_channels"]) == len(
        gpu.train.model.kwargs["stage_channels"]
    )
    assert suite.train.loss == gpu.train.loss and suite.train.schedule.kind == "spectral"
    # The preset's own sizes: 64 px, N >= 5000 reference images.
    assert gpu.train.data.image_size == 64 and 15 * gpu.reference.patches_per_image >= 5000
    runner = Runner(suite, tmp_path, progress=False)
    record = runner.evaluate(Variant("spectral", suite.train), suite.nfes[0], suite.reduced_n)
    assert record["n"] == suite.reduced_n and np.isfinite(record["fd"])


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
    from reproduce._reference import Reference
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
