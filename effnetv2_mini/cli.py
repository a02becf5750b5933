"""The ``effnetv2`` command.

    effnetv2 models                         list every model with params and FLOPs
    effnetv2 summary efficientnetv2_s       Table-4-style stage summary
    effnetv2 bench efficientnetv2_s --image-size 128 --batch-size 16 --device cpu
"""

from __future__ import annotations

import argparse
import sys

import torch

from .configs import get_config, list_models
from .measure import benchmark_throughput, count_macs, count_params, pick_device
from .model import build_model
from .notebook import format_table


def _models(args) -> None:
    rows = []
    for name in list_models(args.family):
        config = get_config(name)
        with torch.device("meta"):
            model = build_model(name)
        rows.append(
            {"model": name, "family": config.family, "params": count_params(model),
             "macs_b": count_macs(model, config.eval_size) / 1e9, "eval_size": config.eval_size,
             "description": config.description}
        )
    print(format_table(rows, ["model", "family", "params", "macs_b", "eval_size", "description"],
                       ["model", "family", "params", "GMACs", "eval px", "description"]))


def _summary(args) -> None:
    config = get_config(args.model)
    with torch.device("meta"):
        model = build_model(args.model)
    size = args.image_size or config.eval_size
    print(f"{config.description}\nblock strings: {config.block_strings()}\n")
    print(format_table(model.stage_table(size), ["stage", "operator", "stride", "channels", "layers", "resolution"]))


def _bench(args) -> None:
    device = pick_device(args.device)
    model = build_model(args.model).to(device)
    for mode in ("train", "eval"):
        r = benchmark_throughput(model, args.image_size, args.batch_size, mode=mode, amp=args.amp,
                                 channels_last=args.channels_last, repeats=args.repeats)
        print(f"{args.model} {mode:<5} {r['images_per_sec']:8.1f} images/s  ({args.image_size}px, batch "
              f"{args.batch_size}, {device}{', AMP' if args.amp else ''}{', channels_last' if args.channels_last else ''})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effnetv2", description="EfficientNetV2, small and readable.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list every model with params and FLOPs")
    p.add_argument("--family", choices=["v2", "v1", "demo"], help="only one family")
    p.set_defaults(func=_models)

    p = sub.add_parser("summary", help="Table-4-style stage summary of a model")
    p.add_argument("model")
    p.add_argument("--image-size", type=int, help="input resolution (default: the model's eval size)")
    p.set_defaults(func=_summary)

    p = sub.add_parser("bench", help="training and inference images/s of one model")
    p.add_argument("model")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (KeyError, ValueError) as error:
        print(f"effnetv2: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
