"""Training never loses good state: divergence, damaged checkpoints and logs, a full
disk and hard kills, each on the tiny model of test_train for a few steps."""

import dataclasses
import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_train import TINY, leaves

from spectral_diffusion._io import atomic_write_text
from spectral_diffusion.train import TrainingDiverged, _trainer, restore, train


def logged_steps(workdir: Path) -> list[int]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def finite(state) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in leaves(state))


def test_nan_is_never_checkpointed_and_the_run_resumes(tmp_path, monkeypatch):
    real = _trainer.make_train_step

    def poisoned(recipe, num_classes):
        step = real(recipe, num_classes)

        def run(state, images, labels, key):
            state, metrics = step(state, images, labels, key)
            if int(state.step) >= 3:  # NaN injected at step 3
                nan = lambda x: x * jnp.nan if eqx.is_inexact_array(x) else x  # noqa: E731
                state = eqx.tree_at(lambda s: s.denoiser, state, jax.tree.map(nan, state.denoiser))
                metrics = {**metrics, "loss": metrics["loss"] * jnp.nan}
            return state, metrics

        return run

    monkeypatch.setattr(_trainer, "make_train_step", poisoned)
    config = dataclasses.replace(TINY, steps=8, keep_checkpoints=1)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 3;.* step 2 in "):
        train(config, tmp_path, progress=False)
    assert int(restore(tmp_path).step) == 2 and finite(restore(tmp_path))
    assert logged_steps(tmp_path) == [1, 2]
    monkeypatch.setattr(_trainer, "make_train_step", real)
    state = train(config, tmp_path, steps=4, progress=False)
    assert int(state.step) == 4 and finite(state) and logged_steps(tmp_path) == [1, 2, 3, 4]


def test_damaged_checkpoint_and_log_fall_back_to_the_last_intact_state(tmp_path, capsys):
    train(TINY, tmp_path, progress=False)  # checkpoints 2 and 4
    checkpoints = tmp_path / "checkpoints"
    for path in (checkpoints / "4").rglob("*"):
        if path.is_file() and path.name != "_CHECKPOINT_METADATA":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    (checkpoints / "6.orbax-checkpoint-tmp-1234").mkdir()
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write('{"step": 5, "lo')  # a crash mid-append
    state = restore(tmp_path)  # the latest intact one
    assert int(state.step) == 2
    lines = capsys.readouterr().out.splitlines()
    assert any("interrupted checkpoint write" in line for line in lines)
    assert any(f"{checkpoints / '4'} is damaged" in line for line in lines)
    assert (tmp_path / "damaged_checkpoints" / "4").is_dir()  # moved aside, not deleted
    assert not list(checkpoints.glob("*tmp*"))
    resumed = train(TINY, tmp_path, progress=False)
    assert int(resumed.step) == 4 and logged_steps(tmp_path) == [1, 2, 3, 4]
    # The same parameters as a run that was never damaged.
    straight = train(TINY, tmp_path / "straight", progress=False)
    assert all(
        np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(leaves(straight), leaves(resumed))
    )


def test_disk_full_is_one_line_and_leaves_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    from spectral_diffusion.train.__main__ import main

    real_save = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step >= 4:
            (Path(self.directory) / f"{step}.orbax-checkpoint-tmp-99").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    config = tmp_path / "tiny.py"
    config.write_text("from test_train import TINY as config\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(config), "--workdir", str(tmp_path / "run")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in err, err[-2000:]
    assert "Cannot write the checkpoint of step 4" in error[0]
    assert "No space left on device" in error[0]
    assert not list((tmp_path / "run" / "checkpoints").glob("*tmp*"))
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    assert int(restore(tmp_path / "run").step) == 2


KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import orbax.checkpoint as ocp
from test_train import TINY
from spectral_diffusion.train import _trainer, train

where = {where!r}
if where == "checkpoint":  # SIGKILL while the checkpoint of step 4 is being written
    real = ocp.CheckpointManager.wait_until_finished
    def dying(self):
        if self.latest_step() == 4 or any(self.directory.glob("4.orbax-checkpoint-tmp*")):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self)
    ocp.CheckpointManager.wait_until_finished = dying
else:  # SIGKILL after step 3 was logged, before step 4 finishes
    real_step = _trainer.make_train_step
    def dying_step(recipe, n):
        step = real_step(recipe, n)
        def run(state, *args):
            if int(state.step) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(state, *args)
        return run
    _trainer.make_train_step = dying_step
train(TINY, {workdir!r}, progress=False)
"""


@pytest.mark.parametrize("where", ["step", "checkpoint"])
def test_sigkill_resumes_from_the_right_step(tmp_path, where):
    script = KILLER.format(tests=str(Path(__file__).parent), where=where, workdir=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    # Killed before step 4: the last checkpoint is step 2, step 3's log line is dropped
    # and redone. Killed writing step 4's checkpoint: a partial write is discarded.
    state = train(TINY, tmp_path, progress=False)
    assert int(state.step) == 4 and logged_steps(tmp_path) == [1, 2, 3, 4]
    assert not list((tmp_path / "checkpoints").glob("*tmp*"))


def test_files_users_own_follow_the_umask_and_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "result.json", "{}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o600)
        atomic_write_text(path, "{}\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a rewrite keeps the mode
    finally:
        os.umask(old)


def test_cli_refuses_bad_numbers_and_config_files(tmp_path, capsys):
    from spectral_diffusion.train.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["--config", "cpu", "--workdir", str(tmp_path), "--steps", "-5"])
    assert exit_.value.code == 2 and "--steps must be >= 1, got -5" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("steps = 3\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(empty), "--workdir", str(tmp_path / "run")])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(error) == 1
    assert "must define `config = TrainConfig(...)`" in error[0]
