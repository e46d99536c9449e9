"""The ``nif-zoo`` command line: a thin layer over the library.

Every subcommand has ``--help``; errors print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _list(args) -> None:
    from nif_zoo import registry

    for name in registry.list_models(args.pattern, published_only=args.published):
        entry = registry.get_entry(name)
        print(f"{name:24s} {entry['status']:10s} {entry['description']}")


def _info(args) -> None:
    from nif_zoo import registry

    print(json.dumps(registry.info(args.name), indent=2, sort_keys=True))


def _download(args) -> None:
    from nif_zoo.pretrained import resolve_reference

    folder, _ = resolve_reference(args.name)
    print(folder)


def _sample(args) -> None:
    import jax

    from nif_zoo import plots
    from nif_zoo.pretrained import load

    model = load(args.name)
    n = args.rows * args.cols
    if _is_vae(model):
        images, settings = _vae_images(model, args), "decoder means of prior draws"
    else:
        images = model.sample(jax.random.key(args.seed), n, t=args.t, s=args.s)
        settings = f"t={args.t}, s={args.s}"
    plots.save_png(plots.image_grid(images, args.rows, args.cols), args.output)
    print(f"wrote {n} samples ({settings}) to {args.output}")


def _is_vae(model) -> bool:
    from nif_zoo.hyperbolic.pretrained import PretrainedVAE

    return isinstance(model, PretrainedVAE)


def _vae_images(model, args):
    import jax

    from nif_zoo.hyperbolic.publish import as_images

    if model.config.dataset != "fmnist":
        raise ValueError(f"{args.name} models rows of {model.config.data_dim} numbers, not images: "
                         "call model.sample(rng, n) in Python")
    if (args.t, args.s) != (1.0, 1.0):
        raise ValueError(f"--t and --s are for flows; {args.name} is a VAE: leave them out")
    return as_images(model.sample(jax.random.key(args.seed), args.rows * args.cols))


def _eval(args) -> None:
    from nif_zoo import data, evaluate
    from nif_zoo.pretrained import load

    model = load(args.name)
    if _is_vae(model):
        raise ValueError(f"{args.name} is a VAE, scored in nats by importance sampling, not bits/dim: "
                         f"run `nif-zoo bench {args.name}`")
    images, _ = data.load_dataset(args.data, args.split, model.config.image_shape)
    images = images[: args.limit] if args.limit else images
    results = {f"s={s:g}": evaluate.bits_per_dim(model, images, args.draws, args.seed, s)
               for s in args.s}
    print(json.dumps({"model": args.name, "data": args.data, "split": args.split,
                      "bits_per_dim": results}, indent=2))


def _override(config, pairs) -> None:
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in config:
            raise KeyError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {sorted(config)}")
        current = config[key]
        if isinstance(current, bool):
            config[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(current, (int, float, str)):
            config[key] = type(current)(value)
        else:
            raise KeyError(f"--set cannot change {key!r} (a {type(current).__name__})")


def _train(args) -> None:
    from nif_zoo.configs import load_config
    from nif_zoo.train import train_and_evaluate

    if args.distributed:
        import jax

        jax.distributed.initialize()  # reads the coordinator settings of the cluster
    config = load_config(args.config)
    _override(config, args.set)
    train_and_evaluate(config, args.workdir)


def _finetune(args) -> None:
    from nif_zoo import registry
    from nif_zoo.configs import load_config
    from nif_zoo.train import train_and_evaluate

    entry = registry.get_entry(args.name)
    if entry["architecture"].get("kind") == "hvae":
        _finetune_vae(args)
        return
    config = load_config(entry["train_config"])
    config.model = entry["architecture"]
    config.init_from = args.name
    config.data = args.data
    config.train_split = config.eval_split = "train"
    if args.latent_dim:
        config.model.latent_dim = args.latent_dim
        config.reinit_head = True
    config.update(num_steps=args.steps, learning_rate=args.learning_rate,
                  warmup_steps=min(config.warmup_steps, args.steps // 10 + 1))
    _override(config, args.set)
    train_and_evaluate(config, args.workdir)


def _finetune_vae(args) -> None:
    from nif_zoo.hyperbolic import data, train
    from nif_zoo.pretrained import load

    if args.latent_dim or args.set:
        raise ValueError(f"--latent-dim and --set are for flows; {args.name} is a VAE")
    model = load(args.name)
    rows = data.user_rows(args.data, model.config.data_dim, model.config.dataset)
    summary = train.fine_tune(model, rows, args.workdir, args.steps, args.learning_rate)
    print(json.dumps(summary, sort_keys=True))


def _publish(args) -> None:
    from nif_zoo.hyperbolic.publish import is_vae_workdir
    from nif_zoo.hyperbolic.publish import publish as publish_vae
    from nif_zoo.publish import publish

    notes = Path(args.notes).read_text() if args.notes else ""
    if is_vae_workdir(args.workdir):
        folder = publish_vae(args.workdir, args.name, args.bench, args.description, notes, args.push)
    else:
        folder = publish(args.workdir, args.name, args.bench, args.description, notes,
                         args.train_config, args.push)
    print(f"published {args.name}: {folder}")


def _refresh(args) -> None:
    from nif_zoo.hyperbolic.publish import refresh

    print(f"refreshed {args.name}: {refresh(args.name, args.bench)}")


def _bench(args) -> None:
    from nif_zoo import bench
    from nif_zoo.pretrained import load

    model = load(args.name)
    if _is_vae(model):
        from nif_zoo.hyperbolic import bench as vae_bench

        result = vae_bench.run(model, args.name, k=args.k, test_limit=args.test_limit or None)
    else:
        result = bench.run(model, args.name, draws=args.draws, fd_samples=args.fd_samples,
                           test_limit=args.test_limit, probe_train=args.probe_train)
    path = bench.write(result, args.output or f"benchmarks/results/{args.name}.json")
    print(json.dumps(result, indent=2, sort_keys=True))
    print(f"wrote {path}", file=sys.stderr)


def _demo(args) -> None:
    import time

    import jax
    import numpy as np

    from nif_zoo import data, plots
    from nif_zoo.pretrained import load

    started = time.time()
    model = load(args.name)
    images = model.sample(jax.random.key(args.seed), 64, t=args.t, s=args.s)
    plots.save_png(plots.image_grid(images, 8, 8, scale=2), args.output)
    print(f"{args.name}: wrote 64 samples (t={args.t}, s={args.s}) to {args.output}")
    test, _ = data.load_fashion_mnist("test")
    bpd = np.asarray(model.bits_per_dim(test[: args.test_images], jax.random.key(args.seed)))
    print(f"{args.name}: test bits/dim on the first {len(bpd)} Fashion-MNIST test images "
          f"({model.config.n_bits}-bit, one dequantisation draw): {bpd.mean():.4f} "
          f"+/- {bpd.std(ddof=1) / np.sqrt(len(bpd)):.4f}  ({time.time() - started:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nif-zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="load a shipped model, write samples, print test bits/dim")
    p.add_argument("--name", default="fmnist-nif64.small")
    p.add_argument("-o", "--output", default="samples.png")
    p.add_argument("--t", type=float, default=0.7)
    p.add_argument("--s", type=float, default=0.0)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_demo)

    p = sub.add_parser("list", help="list zoo models")
    p.add_argument("pattern", nargs="?", help="a glob such as 'fmnist-*'")
    p.add_argument("--published", action="store_true", help="only models with weights")
    p.set_defaults(run=_list)

    p = sub.add_parser("info", help="a model's manifest entry as JSON")
    p.add_argument("name")
    p.set_defaults(run=_info)

    p = sub.add_parser("download", help="fetch and verify a model's files; print the folder")
    p.add_argument("name", help="zoo name or hf-hub:org/repo@revision")
    p.set_defaults(run=_download)

    p = sub.add_parser("sample", help="write a grid of samples as PNG")
    p.add_argument("name", help="zoo name, hf-hub: reference or model folder")
    p.add_argument("-o", "--output", required=True, help="PNG path")
    p.add_argument("--t", type=float, default=1.0, help="temperature")
    p.add_argument("--s", type=float, default=1.0, help="manifold-noise scale (0: on the manifold)")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_sample)

    p = sub.add_parser("eval", help="bits/dim on a dataset")
    p.add_argument("name")
    p.add_argument("--data", default="fmnist", help="fmnist, cifar10:PATH, celeba:PATH, a folder "
                   "of images or an .npy/.npz file")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--draws", type=int, default=1, help="dequantisation draws")
    p.add_argument("--s", type=float, nargs="+", default=[1.0], help="manifold-noise scales")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_eval)

    p = sub.add_parser("train", help="train a config (resumes from the workdir)")
    p.add_argument("config", help="a config name in nif_zoo/configs (fmnist_nif64) or a .py path")
    p.add_argument("--workdir", required=True, help="checkpoints, logs and curves go here")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first")
    p.set_defaults(run=_train)

    p = sub.add_parser("finetune", help="fine-tune a zoo model on your images")
    p.add_argument("name", help="the zoo model to start from")
    p.add_argument("--data", required=True, help="a folder of images, an .npy/.npz file, ...")
    p.add_argument("--workdir", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--latent-dim", type=int, default=0, help="re-initialise the head with this k")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.set_defaults(run=_finetune)

    p = sub.add_parser("publish", help="export a workdir to zoo/NAME, its card and manifest entry")
    p.add_argument("workdir")
    p.add_argument("--name", required=True)
    p.add_argument("--bench", help="the JSON written by `nif-zoo bench` for the card's figures")
    p.add_argument("--description", default="")
    p.add_argument("--notes", help="a Markdown file shown on the card")
    p.add_argument("--train-config", default="", help="the config file that trained it")
    p.add_argument("--push", metavar="REPO_ID", help="also upload to this Hugging Face repo")
    p.set_defaults(run=_publish)

    p = sub.add_parser("refresh", help="put new `nif-zoo bench` figures on a published VAE's card "
                       "and manifest entry, weights untouched (no workdir needed)")
    p.add_argument("name")
    p.add_argument("--bench", required=True, help="the JSON written by `nif-zoo bench NAME`")
    p.set_defaults(run=_refresh)

    p = sub.add_parser("bench", help="bits/dim, FD and linear probe of a Fashion-MNIST flow; "
                       "IS log-likelihood of a VAE")
    p.add_argument("name")
    p.add_argument("--output", help="JSON path (default benchmarks/results/NAME.json)")
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--fd-samples", type=int, default=10_000)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--probe-train", type=int, default=0)
    p.add_argument("--k", type=int, default=500, help="importance samples (VAEs)")
    p.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, TypeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"nif-zoo {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
