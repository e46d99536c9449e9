"""The ``nif-zoo`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import sys


def _train(args) -> None:
    from nif_zoo.configs import load_config
    from nif_zoo.train import train_and_evaluate

    config = load_config(args.config)
    for override in args.set or []:
        key, _, value = override.partition("=")
        config[key] = type(config[key])(value) if not isinstance(config[key], bool) else (
            value.lower() in ("1", "true", "yes"))
    train_and_evaluate(config, args.workdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nif-zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a config from scratch (resumes from the workdir)")
    p.add_argument("config", help="a config name in nif_zoo/configs (fmnist_nif64) or a .py path")
    p.add_argument("--workdir", required=True, help="checkpoints, logs and curves go here")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.set_defaults(run=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, TypeError) as error:
        print(f"nif-zoo {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
