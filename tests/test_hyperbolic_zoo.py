"""Hyperbolic VAEs as zoo entries: publish, bench, load by name, sample, fine-tune, create, cards."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import nif_zoo
from nif_zoo import cards, cli, hub, registry
from nif_zoo.hyperbolic import lorentz, train
from nif_zoo.hyperbolic.config import for_dataset
from nif_zoo.hyperbolic.pretrained import PretrainedVAE

REPO = Path(__file__).resolve().parents[1]
TINY = dict(hidden=16, flow_hidden=8)
BDP, FMNIST = "tiny-bdp-hvae-whc.d2", "tiny-fmnist-evae-nc.d2"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A copy of the manifest and cards with two tiny trained VAEs published into it."""
    root = tmp_path_factory.mktemp("zoo")
    shutil.copy(REPO / "checkpoints_manifest.json", root / "checkpoints_manifest.json")
    shutil.copytree(REPO / "model_cards", root / "model_cards")
    settings = train.TrainConfig(steps=20, log_every=10, checkpoint_every=10)
    train.train_and_evaluate(for_dataset("bdp", 2, "whc", **TINY), settings, root / BDP)
    train.train_and_evaluate(for_dataset("fmnist", 2, "euclidean", **TINY), settings, root / FMNIST)
    mp = pytest.MonkeyPatch()
    mp.setenv(registry.MANIFEST_ENV, str(root / "checkpoints_manifest.json"))
    for name in (BDP, FMNIST):
        assert cli.main(["publish", str(root / name), "--name", name]) == 0
    yield root
    mp.undo()


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_writes_mirror_card_and_manifest(zoo):
    bdp, fmnist = registry.get_entry(BDP), registry.get_entry(FMNIST)
    assert bdp["status"] == "published" and bdp["revision"] is None
    assert bdp["architecture"]["kind"] == "hvae" and bdp["metrics"] == {}
    assert {"config.json", "README.md", "files.json", "poincare_disk.png",
            "training_curve.png"} <= set(bdp["files"])
    assert {"samples.png", "reconstructions.png"} <= set(fmnist["files"])
    assert "poincare_disk.png" not in fmnist["files"]  # a Euclidean latent has no disk picture
    for name, entry in ((BDP, bdp), (FMNIST, fmnist)):
        card = (zoo / entry["card"]).read_text()
        assert (zoo / entry["mirror"] / "README.md").read_text() == card
        front, body = cards.parse_card(card)
        assert "hyperbolic" in front["tags"] and front["datasets"] == [entry["data"]["dataset"]]
        assert body.lstrip().startswith(f"# {name}\n") and f'nif_zoo.load("{name}")' in body
        assert "python -m nif_zoo.hyperbolic.train --dataset" in body
    assert "H-VAE + WHC" in bdp["description"] and "Euclidean" in fmnist["description"]


def test_bench_then_publish_with_its_figures(zoo, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code, _, err = run(capsys, "bench", BDP, "--k", "10", "--output", out_json)
    assert code == 0, err
    bench = json.loads(out_json.read_text())
    assert bench["k"] == 10 and bench["test_examples"] == 95
    assert bench["log_likelihood"]["mean"] >= bench["elbo"] - 1.0  # IS is the tighter bound
    code, _, err = run(capsys, "publish", zoo / BDP, "--name", BDP, "--bench", out_json)
    assert code == 0, err
    entry = registry.get_entry(BDP)
    assert entry["metrics"]["test_log_likelihood_nats"] == pytest.approx(bench["log_likelihood"]["mean"])
    assert entry["metrics"]["radius"] == pytest.approx(bench["radius"])
    assert entry["metrics_command"] == f"nif-zoo bench {BDP}"
    front, body = cards.parse_card((zoo / entry["card"]).read_text())
    assert front["model-index"][0]["name"] == BDP
    assert f"{bench['log_likelihood']['mean']:.2f}" in body

    code, _, err = run(capsys, "bench", FMNIST, "--k", "4", "--test-limit", "30", "--output", out_json)
    assert code == 0, err
    bench = json.loads(out_json.read_text())
    assert bench["test_examples"] == 30 and np.isnan(bench["radius"])
    code, _, err = run(capsys, "publish", zoo / FMNIST, "--name", FMNIST, "--bench", out_json)
    assert code == 0, err
    assert "radius" not in registry.get_entry(FMNIST)["metrics"]


def test_refresh_puts_new_figures_on_the_card_and_keeps_the_weights(zoo, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    assert run(capsys, "bench", FMNIST, "--k", "3", "--test-limit", "12", "--output", out_json)[0] == 0
    bench = json.loads(out_json.read_text())
    folder = zoo / registry.get_entry(FMNIST)["mirror"]
    before = hub.describe_folder(folder)
    code, out, err = run(capsys, "refresh", FMNIST, "--bench", out_json)
    assert code == 0, err
    entry = registry.get_entry(FMNIST)
    after = hub.describe_folder(folder)
    assert {f for f in after if after[f] != before[f]} == {"README.md", "files.json"}
    assert entry["files"] == after
    assert entry["metrics"]["test_log_likelihood_nats"] == pytest.approx(bench["log_likelihood"]["mean"])
    card = (zoo / entry["card"]).read_text()
    assert (folder / "README.md").read_text() == card
    assert card.count("`nif-zoo bench` on") == 1 and "(first 12 test points" in card
    assert "Trained for 20 Adam steps" in card
    assert nif_zoo.load(FMNIST).name == FMNIST  # checksums of the refreshed folder verify

    code, _, err = run(capsys, "refresh", BDP, "--bench", out_json)
    assert code == 1 and f"holds the figures of '{FMNIST}', not '{BDP}'" in err
    code, _, err = run(capsys, "refresh", "fmnist-nif64.small", "--bench", out_json)
    assert code == 1 and "is a flow: publish it again from its workdir" in err


def test_load_by_name_gives_encode_decode_sample_log_prob(zoo):
    model = nif_zoo.load(BDP)
    assert isinstance(model, PretrainedVAE) and model.name == BDP
    rows = np.random.default_rng(0).normal(size=(5, 50)).astype(np.float32)
    z = model.encode(rows)
    assert z.shape == (5, 3)
    lorentz.check_on_manifold(z, model.radius)
    assert model.decode(z).shape == (5, 50)
    assert model.sample(jax.random.key(0), 4).shape == (4, 50)
    log_p = model.log_prob(rows, k=8, chunk=4)
    assert log_p.shape == (5,) and np.all(np.isfinite(log_p))
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    assert nif_zoo.load(FMNIST).encode(images).shape == (3, 2)


def test_load_from_a_relative_folder(zoo, monkeypatch):
    monkeypatch.chdir(zoo)
    model = nif_zoo.load(registry.get_entry(BDP)["mirror"])
    assert isinstance(model, PretrainedVAE) and model.name == BDP


def test_create_gives_the_architecture_with_fresh_weights(zoo):
    fresh, trained = nif_zoo.create(BDP, seed=3), nif_zoo.load(BDP)
    assert isinstance(fresh, PretrainedVAE) and fresh.config == trained.config
    shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
    assert shapes(fresh.params) == shapes(trained.params)
    assert not np.allclose(fresh.params["decoder_out"]["kernel"], trained.params["decoder_out"]["kernel"])


def test_sample_writes_images_for_an_image_model_only(zoo, tmp_path, capsys):
    path = tmp_path / "grid.png"
    code, out, err = run(capsys, "sample", FMNIST, "-o", path, "--rows", "2", "--cols", "3")
    assert code == 0, err
    assert Image.open(path).size[0] > 3 * 28
    assert "6 samples (decoder means of prior draws)" in out and "t=" not in out
    code, _, err = run(capsys, "sample", BDP, "-o", path)
    assert code == 1 and "rows of 50 numbers" in err
    code, _, err = run(capsys, "sample", FMNIST, "-o", path, "--t", "0.5")
    assert code == 1 and "--t and --s are for flows" in err
    code, _, err = run(capsys, "eval", BDP)
    assert code == 1 and f"nif-zoo bench {BDP}" in err


def test_finetune_on_a_users_rows(zoo, tmp_path, capsys):
    rows = np.random.default_rng(1).normal(size=(40, 50)).astype(np.float32)
    np.save(tmp_path / "mine.npy", rows)
    code, out, err = run(capsys, "finetune", BDP, "--data", tmp_path / "mine.npy", "--steps", "3",
                         "--workdir", tmp_path / "ft")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["step"] == 3
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init_from"] == BDP
    tuned, start = nif_zoo.load(str(tmp_path / "ft" / "model")), nif_zoo.load(BDP)
    assert tuned.config == start.config and "fine-tuned from" in tuned.data["preprocessing"]
    # Three small steps from the zoo weights: moved, but not far (a fresh init would be far off).
    kernel, original = tuned.params["decoder_out"]["kernel"], start.params["decoder_out"]["kernel"]
    assert 0 < np.abs(kernel - original).max() < 0.05

    images = np.random.default_rng(2).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    code, _, err = run(capsys, "finetune", FMNIST, "--data", tmp_path / "images.npy", "--steps", "2",
                       "--workdir", tmp_path / "ft-images")
    assert code == 0, err
    assert nif_zoo.load(str(tmp_path / "ft-images" / "model")).config == nif_zoo.load(FMNIST).config

    np.save(tmp_path / "wide.npy", np.zeros((40, 7), np.float32))
    code, _, err = run(capsys, "finetune", BDP, "--data", tmp_path / "wide.npy", "--workdir", tmp_path / "w")
    assert code == 1 and "rows of 7 numbers; this model takes 50" in err
    code, _, err = run(capsys, "finetune", BDP, "--data", tmp_path / "mine.npy", "--latent-dim", "4",
                       "--workdir", tmp_path / "w")
    assert code == 1 and "is a VAE" in err
