"""The built wheel trains on its own: installed into a fresh virtual environment and
run from a directory outside the checkout, where `reproduce/` cannot be imported.

Offline: the wheel is built without build isolation (hatchling is a dev dependency)
and installed with `--no-deps`; the new environment sees this one's site-packages
for the dependencies through a `.pth` line (the editable install's own `.pth` hook
is not processed from there, so the checkout stays invisible).
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

TINY_FROM_PRESET = """
import dataclasses

from spectral_diffusion.train import PRESETS

cpu = PRESETS["cpu"]
config = dataclasses.replace(
    cpu,
    data=dataclasses.replace(cpu.data, image_size=8, batch_size=4, patches_per_image=2),
    model=dataclasses.replace(
        cpu.model, kwargs=dict(stage_channels=(8, 16), dim=16, depth=1, num_heads=2)
    ),
    schedule=dataclasses.replace(cpu.schedule, num_knots=8, mixture_components=1),
    checkpoint_every=1,
    log_every=1,
)
"""


def run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_installed_wheel_trains_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, ROOT], tmp_path, env)
    (wheel,) = dist.glob("spectral_diffusion-*.whl")

    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    site = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            tmp_path,
            env,
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheel], tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(
        [
            python,
            "-c",
            textwrap.dedent("""
            import importlib.util, spectral_diffusion
            print(spectral_diffusion.__file__)
            print(importlib.util.find_spec("reproduce") is None)
        """),
        ],
        elsewhere,
        env,
    ).split()
    assert where == [str(site / "spectral_diffusion" / "__init__.py"), "True"]

    cli = [python, "-m", "spectral_diffusion.train"]
    assert "PRESETS" in run([*cli, "--help"], elsewhere, env)
    preset = "from spectral_diffusion.train.__main__ import load_config as c; print(c('cpu'))"
    assert "image_size=32" in run([python, "-c", preset], elsewhere, env)
    (elsewhere / "tiny.py").write_text(TINY_FROM_PRESET)
    out = run([*cli, "--config", "tiny.py", "--workdir", "run", "--steps", "1"], elsewhere, env)
    assert "Step 1" in out
    assert (elsewhere / "run" / "metrics.jsonl").is_file()
