"""The ``effnetv2`` command.

    effnetv2 models                         list every model with params and FLOPs
    effnetv2 summary efficientnetv2_s       Table-4-style stage summary
    effnetv2 bench efficientnetv2_s --image-size 128 --batch-size 16 --device cpu
    effnetv2 train --model demo_v2_tiny --dataset synthetic --epochs 5 --out runs/demo
    effnetv2 train --nproc 8 --model efficientnetv2_s --dataset imagenet --data-root /data --epochs 350 --out runs/s
    effnetv2 eval --checkpoint runs/demo/best.pt --dataset synthetic
    effnetv2 nas --space cpu --trials 20 --out runs/nas --epochs 4 --image-size 48
    effnetv2 nas-summary --out runs/nas --top 5
"""

from __future__ import annotations

import argparse
import os
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


def _train(args) -> None:
    from .train import TrainConfig, TrainingDiverged, fit

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = [a for a in sys.argv[1:]]
        index = argv.index("--nproc")
        del argv[index:index + 2]
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
                   "-m", "effnetv2_mini.cli", *argv]
        print("launching:", " ".join(command), flush=True)
        os.execv(sys.executable, command)
    synthetic = {}
    if args.train_samples:
        synthetic["num_samples"] = args.train_samples
    if args.difficulty is not None:
        synthetic["difficulty"] = args.difficulty
    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = TrainConfig(**fields, out_dir=args.out, synthetic=synthetic)
    try:
        summary = fit(config)
    except TrainingDiverged as error:
        raise SystemExit(f"effnetv2 train: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best top-1 {summary['best_top1']:.2f}% after {summary['epochs']} epochs; metrics in {summary['metrics_path']}")


def _eval(args) -> None:
    from .data import eval_transform, get_dataset, is_built_in, make_loader
    from .train import evaluate, load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    device = pick_device(args.device)
    model = build_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"],
                        **checkpoint.get("model_overrides", {}))
    weights = checkpoint["ema"] if args.ema and checkpoint.get("ema") else checkpoint["model"]
    if args.ema and checkpoint.get("ema"):
        weights = {k.removeprefix("module."): v for k, v in weights.items() if k.startswith("module.")}
    model.load_state_dict(weights)
    model.to(device)
    synthetic = is_built_in(args.dataset)
    size = args.image_size or (64 if synthetic else model.config.eval_size)
    options = {"resolution": size} if synthetic else {}
    dataset = get_dataset(args.dataset, "val", root=args.data_root, skip_corrupt=args.skip_corrupt, **options)
    dataset.transform = eval_transform(size, 1.0 if synthetic else 0.875)
    loader = make_loader(dataset, args.batch_size, train=False, workers=args.workers, device=device, drop_last=False)
    result = evaluate(model, loader, device, amp=device.type == "cuda")
    print(f"{args.checkpoint} on {args.dataset} val at {size}px: top-1 {result['top1']:.2f}%, top-5 "
          f"{result['top5']:.2f}%, loss {result['loss']:.4f} ({len(dataset)} images)")


def _nas(args) -> None:
    from .nas import failures, run_search, summarize
    from .train import TrainConfig

    synthetic = {"num_samples": args.train_samples} if args.train_samples else {}
    template = TrainConfig(dataset=args.dataset, data_root=args.data_root, epochs=args.epochs, batch_size=args.batch_size,
                           image_size=args.image_size, preset=args.preset, device=args.device, workers=args.workers,
                           synthetic=synthetic)
    study = run_search(args.out, template, args.trials, space=args.space, storage=args.storage, study_name=args.study,
                       sampler=args.sampler, seed=args.seed, w=args.w, v=args.v)
    _print_candidates(summarize(study, top=args.top))
    failed = failures(study)
    if failed:
        print(f"{len(failed)} failed trial(s): " + "; ".join(f"#{f['trial']}: {f['reason']}" for f in failed))


def _print_candidates(rows) -> None:
    for rank, row in enumerate(rows, start=1):
        print(f"{rank}. reward {row['reward']:.4f}  A {row['accuracy']:.3f}  S {row['normalized_step_time']:.2f}  "
              f"P {row['params']:,}  trial {row['trial']}\n   {row['blocks']}")


def _nas_summary(args) -> None:
    from .nas import failures, load_study, summarize

    study = load_study(args.out, args.storage, args.study)
    _print_candidates(summarize(study, top=args.top, w=args.w, v=args.v))
    for f in failures(study):
        print(f"failed trial {f['trial']}: {f['reason']}")


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

    p = sub.add_parser("train", help="train a model (resumes if --out holds an unfinished run)",
                       description="Train with the paper's recipe (--preset paper) or a simple one (--preset simple). "
                                   "Rerunning the same command resumes; a finished run is a no-op.")
    p.add_argument("--model", required=True, help="e.g. efficientnetv2_s, demo_v2_tiny (effnetv2 models lists them)")
    p.add_argument("--dataset", required=True, help="synthetic, imagenette, imagenet, imagefolder, cifar10, ...")
    p.add_argument("--data-root", help="folder holding the data set")
    p.add_argument("--download", action="store_true", help="download the data set if missing (needs internet)")
    p.add_argument("--out", required=True, help="run directory: config.json, metrics.jsonl, last.pt, best.pt")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--image-size", type=int, help="training size (default: the model's)")
    p.add_argument("--eval-size", type=int, help="evaluation size (default: the model's)")
    p.add_argument("--preset", choices=["paper", "simple"], default="paper")
    p.add_argument("--optimizer", choices=["rmsprop", "adamw", "sgd"])
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's, scaled by batch/256)")
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--ema-decay", type=float, help="0 turns the EMA off")
    p.add_argument("--dropout", type=float)
    p.add_argument("--drop-path-rate", type=float)
    p.add_argument("--randaug-magnitude", type=float, default=0.0)
    p.add_argument("--mixup-alpha", type=float, default=0.0)
    p.add_argument("--cutmix-alpha", type=float, default=0.0)
    p.add_argument("--train-samples", type=int, help="synthetic only: training set size")
    p.add_argument("--difficulty", type=float, help="synthetic only: 0 (easy) .. 1 (hard)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-corrupt", action="store_true", help="drop unreadable images and count them")
    p.add_argument("--init-from", help="fine-tune from: a checkpoint of ours, 'torchvision', or a state-dict file")
    p.add_argument("--freeze-backbone", action="store_true", help="train the classifier only")
    p.add_argument("--random-erasing", type=float, help="probability of cutout-like random erasing")
    p.add_argument("--num-classes", type=int, help="default: the data set's")
    p.add_argument("--max-steps-per-epoch", type=int)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--nproc", type=int, help="processes (GPUs) on this machine: launches torchrun for you")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a data set")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root")
    p.add_argument("--image-size", type=int, help="evaluation size (default: the model's eval size)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    p.add_argument("--skip-corrupt", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("nas", help="training-aware architecture search (paper section 3.2), resumable",
                       description="Sample candidates, train each briefly, rank by A * S^w * P^v. Rerun the same command "
                                   "to resume; start it on several machines with one --storage URL to share the study.")
    p.add_argument("--out", required=True, help="search directory (holds nas.db and candidates/)")
    p.add_argument("--trials", type=int, required=True, help="completed candidates to reach")
    p.add_argument("--space", choices=["cpu", "b4"], default="cpu")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/nas.db)")
    p.add_argument("--study", default="nas")
    p.add_argument("--sampler", choices=["random", "tpe"], default="random")
    p.add_argument("--seed", type=int)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-root")
    p.add_argument("--epochs", type=int, default=4, help="proxy training epochs per candidate")
    p.add_argument("--image-size", type=int, default=48, help="reduced proxy training size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-samples", type=int, default=2000, help="synthetic only")
    p.add_argument("--preset", choices=["paper", "simple"], default="simple")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--w", type=float, default=-0.07, help="exponent of the normalized step time")
    p.add_argument("--v", type=float, default=-0.05, help="exponent of the parameter count")
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=_nas)

    p = sub.add_parser("nas-summary", help="the top candidates of a search, as block strings with A, S, P, reward")
    p.add_argument("--out", required=True)
    p.add_argument("--storage")
    p.add_argument("--study", default="nas")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--w", type=float, help="re-rank with another exponent (default: the study's)")
    p.add_argument("--v", type=float)
    p.set_defaults(func=_nas_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"effnetv2: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
