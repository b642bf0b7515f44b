import json

import numpy as np

import spectral_diffusion as sd
from reproduce import demo
from spectral_diffusion.data import builtin_images


def test_demo_writes_numbers_that_match_the_library(tmp_path, capsys):
    record = demo.main(["--out", str(tmp_path), "--sizes", "32", "64"])
    for name in ("bounds.json", "bounds.md", "schedules.png", "spectra.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    saved = json.loads((tmp_path / "bounds.json").read_text())
    assert saved["sizes"] == json.loads(json.dumps(record["sizes"]))
    assert saved["meta"]["command"] == f"python -m reproduce.demo --out {tmp_path} --sizes 32 64"

    images, names = builtin_images(64)
    lo, hi = sd.logsnr_bounds(sd.rapsd(images))
    np.testing.assert_allclose(saved["sizes"]["64"]["logsnr_min"], lo, rtol=1e-5)
    np.testing.assert_allclose(saved["sizes"]["64"]["logsnr_max"], hi, rtol=1e-5)
    assert saved["sizes"]["64"]["names"] == names
    out = capsys.readouterr().out
    assert "astronaut" in out and "shifted cosine" in out
    # Doubling the resolution lowers each photograph's logsnr_min by about log 4.
    drop = np.subtract(saved["sizes"]["32"]["logsnr_min"], saved["sizes"]["64"]["logsnr_min"])
    np.testing.assert_allclose(drop, np.log(4), atol=0.05)
