"""The Equinox FID Inception-v3 and its weights loader, without PyTorch.

Fixtures in tests/data were written by tests/data/make_fid_fixture.py with torch 2.14
and pytorch-fid 0.3: the reference outputs come from pytorch-fid's own network."""

import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

import spectral_diffusion as sd
from spectral_diffusion._inception import from_state_dict, state_dict


DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
from fid_weights_formula import formula_images, formula_weights  # noqa: E402


@pytest.fixture(scope="module")
def formula_model():
    template = sd.metrics.FIDInception(key=jax.random.key(0))
    shapes = {k: v.shape for k, v in state_dict(template).items()}
    return from_state_dict(formula_weights(shapes)), shapes


@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth"])
def test_loads_pytorch_files_of_both_serialisations(name):
    loaded = sd.metrics.load_state_dict(DATA / name)
    with np.load(DATA / "tiny_expected.npz") as expected:
        assert set(loaded) == set(expected.files)
        for key in expected.files:
            assert loaded[key].dtype == expected[key].dtype, key
            np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)


def test_matches_pytorch_fid_on_formula_weights(formula_model):
    model, _ = formula_model
    images = 2 * formula_images() - 1  # pytorch-fid takes [0, 1]; the library [-1, 1]
    features = np.asarray(jax.jit(jax.vmap(model.features))(images))
    logits = np.asarray(jax.vmap(model.fc)(features))
    with np.load(DATA / "fid_reference.npz") as reference:
        scale = np.abs(reference["features"]).max()
        assert features.shape == (3, 2048)
        np.testing.assert_allclose(features, reference["features"], atol=1e-4 * scale)
        scale = np.abs(reference["logits"]).max()
        np.testing.assert_allclose(logits, reference["logits"], atol=1e-4 * scale)


def test_weights_file_roundtrip_and_fid(formula_model, tmp_path, monkeypatch):
    model, shapes = formula_model
    rng = np.random.default_rng(0)
    random = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    np.savez(tmp_path / "weights.npz", **random)
    monkeypatch.setenv("SPECTRAL_DIFFUSION_FID_WEIGHTS", str(tmp_path / "weights.npz"))
    loaded = sd.metrics.load_fid_inception()
    for key, value in state_dict(loaded).items():
        np.testing.assert_array_equal(value, random[key], err_msg=key)
    images = 2 * formula_images() - 1
    assert sd.metrics.fid(model, images, images, batch_size=3) == pytest.approx(0.0, abs=1e-6)
    assert sd.metrics.fid(model, images, images[::-1] * 0.5, batch_size=3) > 0


def test_bad_weight_files(formula_model, tmp_path, monkeypatch):
    _, shapes = formula_model
    weights = formula_weights(shapes)
    missing = dict(weights)
    missing.pop("Mixed_7c.branch_pool.conv.weight")
    with pytest.raises(ValueError, match="Mixed_7c.branch_pool.conv.weight"):
        from_state_dict(missing)
    wrong = dict(weights, **{"fc.bias": np.zeros(10, np.float32)})
    with pytest.raises(ValueError, match="fc.bias.*expected"):
        from_state_dict(wrong)
    monkeypatch.delenv("SPECTRAL_DIFFUSION_FID_WEIGHTS", raising=False)
    with pytest.raises(ValueError, match="SPECTRAL_DIFFUSION_FID_WEIGHTS"):
        sd.metrics.load_fid_inception()
    with pytest.raises(FileNotFoundError):
        sd.metrics.load_fid_inception(tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="Could not read"):
        sd.metrics.load_state_dict(tmp_path / "text.pth")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_refuses_to_execute_code_from_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": _Exploit()}))
    (tmp_path / "evil.pth").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="Refusing to load"):
        sd.metrics.load_state_dict(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
