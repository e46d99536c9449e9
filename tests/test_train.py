import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from nif_zoo import train
from nif_zoo.configs import load_config
from nif_zoo.writers import read_json_lines

RUNNER = Path(__file__).parent / "helpers" / "train_run.py"


def run_training(workdir, steps, *extra, env=None, check=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    result = subprocess.run([sys.executable, str(RUNNER), str(workdir), str(steps), *extra],
                            capture_output=True, text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-2000:] + result.stderr[-4000:])
    return result


def load_params(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_training_step_end_to_end_and_loss_goes_down(tmp_path):
    config = load_config("tiny")
    config.update(num_steps=40, log_every=5, eval_every=20, checkpoint_every=20, diagnostics_every=20)
    state = train.train_and_evaluate(config, tmp_path)
    assert int(state.step) == 40
    diagnosed = [r for r in read_json_lines(tmp_path / "metrics.jsonl")
                 if "diagnostics/nonfinite_total" in r]
    assert [r["step"] for r in diagnosed] == [20, 40]
    layer_keys = [k for k in diagnosed[-1] if k.startswith("diagnostics/backbone/")]
    assert any(k.endswith("coupling_log_det_max") for k in layer_keys)
    assert any(k.endswith("singular_value_min") for k in layer_keys)
    assert all(np.isfinite(diagnosed[-1][k]) for k in layer_keys)
    rows = [r for r in read_json_lines(tmp_path / "metrics.jsonl") if "bits_per_dim" in r]
    assert rows[-1]["bits_per_dim"] < rows[0]["bits_per_dim"] - 0.2, rows
    assert all(np.isfinite(r["grad_norm"]) for r in rows)
    evals = [r["eval_bits_per_dim"] for r in read_json_lines(tmp_path / "metrics.jsonl")
             if "eval_bits_per_dim" in r]
    assert len(evals) == 2 and np.isfinite(evals).all()
    assert (tmp_path / "tensorboard").is_dir() and json.loads((tmp_path / "config.json").read_text())
    _, params, step = train.load_workdir(tmp_path)
    assert step == 40
    np.testing.assert_array_equal(jax.tree.leaves(params)[0], jax.tree.leaves(state.params)[0])


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(straight, 20, "--params-out", str(tmp_path / "straight.npz"))

    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(resumed), "20"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    checkpoints = resumed / "checkpoints"
    while time.time() < deadline and not (checkpoints / "10").is_dir():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (checkpoints / "10").is_dir(), "the run never reached its step-10 checkpoint"
    assert not (checkpoints / "20").is_dir(), "killed too late: the run had already finished"

    run_training(resumed, 20, "--params-out", str(tmp_path / "resumed.npz"))
    a, b = load_params(tmp_path / "straight.npz"), load_params(tmp_path / "resumed.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key)


def test_nan_guard_skips_counts_and_stops_keeping_last_checkpoint(tmp_path):
    result = run_training(tmp_path, 30, "--nan-from", "12", check=False)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "3 non-finite steps in a row at step 15" in result.stdout
    assert "last good checkpoint (step 10)" in result.stdout
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [5, 10]
    _, params, step = train.load_workdir(tmp_path)
    assert step == 10 and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


def test_sharded_training_on_four_devices_matches_one_device(tmp_path):
    run_training(tmp_path / "one", 6, "--params-out", str(tmp_path / "one.npz"))
    run_training(tmp_path / "four", 6, "--params-out", str(tmp_path / "four.npz"),
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    a, b = load_params(tmp_path / "one.npz"), load_params(tmp_path / "four.npz")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=2e-4, atol=2e-5, err_msg=key)


def test_batch_must_divide_over_devices(tmp_path, monkeypatch):
    class TwoDeviceMesh:
        size = 2

    config = load_config("tiny")
    config.batch_size = 15
    monkeypatch.setattr(train, "data_mesh", TwoDeviceMesh)
    with pytest.raises(ValueError, match="must divide evenly over 2 devices"):
        train.train_and_evaluate(config, tmp_path)
