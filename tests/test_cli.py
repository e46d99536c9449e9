"""Every ``nif-zoo`` subcommand on a tiny model published into a temporary zoo."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nif_zoo import cli, registry, train
from nif_zoo.configs import load_config

REPO = Path(__file__).resolve().parents[1]
NAME = "tiny-nif"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A copy of the manifest and cards, and a tiny trained workdir."""
    root = tmp_path_factory.mktemp("zoo")
    shutil.copy(REPO / "checkpoints_manifest.json", root / "checkpoints_manifest.json")
    shutil.copytree(REPO / "model_cards", root / "model_cards")
    workdir = root / "workdir"
    config = load_config("tiny")
    config.update(num_steps=10, eval_every=10, checkpoint_every=10)
    train.train_and_evaluate(config, workdir)
    mp = pytest.MonkeyPatch()
    mp.setenv("NIF_ZOO_MANIFEST", str(root / "checkpoints_manifest.json"))
    yield root, workdir
    mp.undo()


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def published(zoo):
    root, workdir = zoo
    assert cli.main(["publish", str(workdir), "--name", NAME, "--train-config",
                     "nif_zoo/configs/tiny.py", "--description", "a tiny test model"]) == 0
    return root


def test_publish_writes_mirror_card_and_manifest(published):
    entry = registry.get_entry(NAME)
    assert entry["status"] == "published" and entry["revision"] is None
    folder = published / entry["mirror"]
    assert {"config.json", "README.md", "files.json", "samples.png", "training_curve.png",
            "s_sweep.png", "temperature_sweep.png", "reconstructions.png"} <= set(entry["files"])
    assert (folder / "README.md").read_text() == (published / entry["card"]).read_text()
    assert NAME in registry.list_models(published_only=True)
    assert "fmnist-nif64" not in registry.list_models(published_only=True)


def test_list_info_download(published, capsys):
    code, out, _ = run(capsys, "list", "--published")
    assert code == 0 and NAME in out and "published" in out
    code, out, _ = run(capsys, "info", NAME)
    assert code == 0 and json.loads(out)["name"] == NAME
    code, out, _ = run(capsys, "download", NAME)
    assert code == 0 and Path(out.strip()).is_dir()


def test_sample_writes_a_png(published, tmp_path, capsys):
    path = tmp_path / "grid.png"
    code, _, err = run(capsys, "sample", NAME, "-o", path, "--t", "0.7", "--s", "0",
                       "--rows", "2", "--cols", "3")
    assert code == 0, err
    assert Image.open(path).size[0] > 3 * 28


def test_eval_prints_bits_per_dim_for_each_s(published, capsys):
    code, out, err = run(capsys, "eval", NAME, "--limit", "64", "--s", "0.5", "1", "--draws", "2")
    assert code == 0, err
    result = json.loads(out)["bits_per_dim"]
    assert set(result) == {"s=0.5", "s=1"} and all(0 < r["mean"] < 8 for r in result.values())
    assert result["s=1"]["draws"] == 2 and result["s=1"]["stderr"] >= 0


def test_bench_then_publish_with_its_figures(published, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code, _, err = run(capsys, "bench", NAME, "--fd-samples", "200", "--test-limit", "200",
                       "--probe-train", "1000", "--draws", "2", "--output", out_json)
    assert code == 0, err
    bench = json.loads(out_json.read_text())
    assert bench["frechet_distance"]["best_s"] in [round(0.2 * i, 1) for i in range(7)]
    assert 0.1 < bench["linear_probe"]["latent_accuracy"] <= 1
    code, _, err = run(capsys, "publish", published / "workdir", "--name", NAME,
                       "--bench", out_json)
    assert code == 0, err
    metrics = registry.get_entry(NAME)["metrics"]
    assert metrics["test_bits_per_dim"] == pytest.approx(bench["bits_per_dim"]["mean"])
    assert "fd_vs_s.png" in registry.get_entry(NAME)["files"]


def test_demo(published, tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--name", NAME, "--test-images", "50", "-o",
                         tmp_path / "demo.png")
    assert code == 0, err
    assert "test bits/dim" in out and (tmp_path / "demo.png").exists()


def test_finetune_on_an_array_and_with_a_new_head(published, tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    np.save(tmp_path / "mine.npy", images)
    code, _, err = run(capsys, "finetune", NAME, "--data", tmp_path / "mine.npy", "--steps", "3",
                       "--workdir", tmp_path / "ft", "--set", "init_batch_size=16")
    assert code == 0, err
    assert train.load_workdir(tmp_path / "ft")[2] == 3
    code, _, err = run(capsys, "finetune", NAME, "--data", tmp_path / "mine.npy", "--steps", "2",
                       "--latent-dim", "8", "--workdir", tmp_path / "ft8")
    assert code == 0, err
    assert train.load_workdir(tmp_path / "ft8")[1]["head"]["a"].shape == (784, 8)


@pytest.mark.parametrize("argv, message", [
    (["info", "fmnist-nif46"], "Did you mean 'fmnist-nif64'"),
    (["sample", "fmnist-nif64", "-o", "x.png"], "no weights exist"),
    (["train", "no_such_config", "--workdir", "w"], "no config file"),
    (["train", "tiny", "--workdir", "w", "--set", "no_such_key=1"], "no_such_key"),
    (["eval", "/no/such/folder"], "no model named"),
])
def test_errors_are_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", ["list", "info", "download", "sample", "eval", "train",
                                     "finetune", "publish", "bench", "demo"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: nif-zoo" in capsys.readouterr().out
