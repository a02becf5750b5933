"""The ``effnetv2`` command.

    effnetv2 models                         list every model with params and FLOPs
    effnetv2 summary efficientnetv2_s       Table-4-style stage summary
    effnetv2 bench efficientnetv2_s --image-size 128 --batch-size 16 --device cpu
    effnetv2 train --model demo_v2_tiny --dataset synthetic --epochs 5 --out runs/demo
    effnetv2 train --model demo_v2_tiny --dataset synthetic --epochs 8 \\
        --progressive "size=32:64 randaug=0:10" --out runs/p
    effnetv2 train --nproc 8 --model efficientnetv2_s --dataset imagenet --data-root /data \\
        --epochs 350 --progressive paper --out runs/s
    effnetv2 eval --checkpoint runs/demo/best.pt --dataset synthetic
    effnetv2 nas --space cpu --trials 20 --out runs/nas --epochs 4 --image-size 48
    effnetv2 nas-summary --out runs/nas --top 5

Every value is checked here, before any work starts: a wrong one is an error that names the option.
"""

from __future__ import annotations

import argparse
import os
import sys

# option types, checked at the edge with the option named in the error: the same checks as the
# bench/ scripts' and TrainConfig's
from .argtypes import (
    finite_float,
    fraction,
    image_size,
    mix_alpha,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["main", "build_parser"]


# ---- commands ------------------------------------------------------------------------------------

def _models(args) -> None:
    from .paper.configs import get_config, list_models
    from .study.tables import format_table
    from .zoo import model_counts

    rows = [{"model": name, "family": get_config(name).family, **model_counts(name),
             "description": get_config(name).description}
            for name in list_models(args.family)]
    print(format_table([dict(r, macs_b=r["macs"] / 1e9) for r in rows],
                       ["model", "family", "params", "macs_b", "eval_size", "description"],
                       ["model", "family", "params", "GMACs", "eval px", "description"]))


def _summary(args) -> None:
    import torch

    from .paper.configs import get_config
    from .paper.model import build_model
    from .study.tables import format_table

    config = get_config(args.model)
    with torch.device("meta"):
        model = build_model(args.model)
    size = args.image_size or config.eval_size
    print(f"{config.description}\nblock strings: {config.block_strings()}\n")
    print(format_table(model.stage_table(size),
                       ["stage", "operator", "stride", "channels", "layers", "resolution"]))


def _bench(args) -> None:
    from .engine.devices import pick_device
    from .measure import benchmark_throughput
    from .models import build_model

    device = pick_device(args.device)
    model = build_model(args.model).to(device)
    for mode in ("train", "eval"):
        r = benchmark_throughput(model, args.image_size, args.batch_size, mode=mode, amp=args.amp,
                                 channels_last=args.channels_last, repeats=args.repeats)
        options = (", AMP" if args.amp else "") + (", channels_last" if args.channels_last else "")
        print(f"{args.model} {mode:<5} {r['images_per_sec']:8.1f} images/s  ({args.image_size}px, "
              f"batch {args.batch_size}, {device}{options})")


def _train(args) -> None:
    from .engine.build import resolve
    from .engine.config import TrainConfig
    from .engine.distributed import Rendezvous
    from .engine.errors import TrainingDiverged
    from .engine.launch import launch
    from .engine.schedule_spec import parse_schedule

    synthetic = {k: v for k, v in (("num_samples", args.train_samples),
                                   ("difficulty", args.difficulty)) if v is not None}
    fields = {k: v for k, v in vars(args).items()
              if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = TrainConfig(**fields, out_dir=args.out, synthetic=synthetic)
    schedule = None
    if args.finetune_recipe is not None:  # Table 8's (or section 5.2's) recipe: engine.finetune
        config = _finetune_config(args, fields, synthetic)
    elif args.progressive is not None:  # every other recipe rule: engine.build (as the library)
        schedule = parse_schedule(args.progressive, resolve(config)[0], args.variant)
    if args.init_from and args.finetune_recipe is None and config.recipe in ("paper", "code") and \
            int(os.environ.get("RANK", "0")) == 0:
        print(f"--init-from with --recipe {config.recipe}: fine-tuning with the ImageNet training "
              "recipe at the model's training size; the paper's fine-tuning (Table 8: global batch "
              "512, 10,000 steps, the eval size) is --finetune-recipe paper (or code)")
    rendezvous = Rendezvous(args.nnodes, args.node_rank, args.rdzv_endpoint)
    try:
        summary = launch(config, nproc=args.nproc, schedule=schedule, rendezvous=rendezvous)
    except TrainingDiverged as error:
        raise SystemExit(f"effnetv2 train: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if int(os.environ.get("RANK", "0")) == 0 and summary:
        print(f"final top-1 {summary['top1']:.2f}% ({summary['top1_weights']} weights) after "
              f"{summary['epochs']} epochs; metrics in {summary['metrics_path']}")


def _finetune_config(args, fields: dict, synthetic: dict):
    """``--finetune-recipe``: the fine-tuning recipe (paper Table 8, section 5.2 on ImageNet) at its
    global batch of 512, ``--batch-size`` images per process at most (the rest accumulated), the
    recipe's steps; the options given replace the recipe's values (engine.finetune)."""
    from .engine.finetune import finetune_config
    from .paper.transfer import finetune_recipe

    left_to_recipe = {"model", "dataset", "init_from", "epochs", "batch_size", "accumulate",
                      "recipe"}
    given = {k: v for k, v in fields.items() if k not in left_to_recipe}
    if given.get("eval_every") == 1:  # the CLI's default: the recipe evaluates about 20 times
        del given["eval_every"]
    recipe_batch = finetune_recipe(args.finetune_recipe, args.dataset)["global_batch"]
    return finetune_config(args.model, args.dataset, args.init_from, args.finetune_recipe,
                           global_batch=recipe_batch, processes=args.nproc * args.nnodes,
                           batch_size=args.batch_size, out_dir=args.out, synthetic=synthetic,
                           **given)


def _eval(args) -> None:
    from .engine.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root,
                                 image_size=args.image_size, batch_size=args.batch_size,
                                 workers=args.workers, device=args.device, ema=args.ema,
                                 skip_corrupt=args.skip_corrupt)
    print(f"{args.checkpoint} ({result['weights']} weights) on {args.dataset} val at "
          f"{result['image_size']}px: top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}%, "
          f"loss {result['loss']:.4f} ({result['images']} images"
          + (f", {result['skipped']} unreadable skipped" if result["skipped"] else "") + ")")


def _nas(args) -> None:
    from .engine.config import TrainConfig
    from .study.nas_driver import failures, run_search, summarize

    synthetic = {"num_samples": args.train_samples} if args.train_samples else {}
    template = TrainConfig(dataset=args.dataset, data_root=args.data_root, epochs=args.epochs,
                           batch_size=args.batch_size, image_size=args.image_size,
                           eval_size=args.image_size, recipe=args.recipe, device=args.device,
                           workers=args.workers, synthetic=synthetic)
    study = run_search(args.out, template, args.trials, space=args.space, storage=args.storage,
                       study_name=args.study, sampler=args.sampler, seed=args.seed, w=args.w,
                       v=args.v)
    _print_candidates(summarize(study, top=args.top))
    failed = failures(study)
    if failed:
        print(f"{len(failed)} failed trial(s): "
              + "; ".join(f"#{f['trial']}: {f['reason']}" for f in failed))


def _print_candidates(rows) -> None:
    for rank, row in enumerate(rows, start=1):
        print(f"{rank}. reward {row['reward']:.4f}  A {row['accuracy']:.1f}%  S "
              f"{row['normalized_step_time']:.2f}  P {row['params']:,}  trial {row['trial']}\n   "
              f"{row['blocks']}")


def _nas_summary(args) -> None:
    from .study.nas_driver import failures, load_study, summarize

    study = load_study(args.out, args.storage, args.study)
    _print_candidates(summarize(study, top=args.top, w=args.w, v=args.v))
    for f in failures(study):
        print(f"failed trial {f['trial']}: {f['reason']}")


# ---- the parser ----------------------------------------------------------------------------------

class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the descriptions' line breaks."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effnetv2",
                                     description="EfficientNetV2, small and readable.",
                                     formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_models, _add_summary, _add_bench, _add_train, _add_eval, _add_nas,
                _add_nas_summary):
        add(sub)
    return parser


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list every model with params and FLOPs",
                       formatter_class=_Formatter)
    p.add_argument("--family", choices=["v2", "v1", "demo"], help="only one family (default: all)")
    p.set_defaults(func=_models)


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="Table-4-style stage summary of a model",
                       formatter_class=_Formatter)
    p.add_argument("model", type=model_name, help="a model name (effnetv2 models lists them)")
    p.add_argument("--image-size", type=image_size,
                   help="input resolution (default: the model's eval size)")
    p.set_defaults(func=_summary)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="training and inference images/s of one model",
                       formatter_class=_Formatter)
    p.add_argument("model", type=model_name, help="a model name (effnetv2 models lists them)")
    p.add_argument("--image-size", type=image_size, default=128, help="input resolution")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per step")
    p.add_argument("--repeats", type=positive_int, default=10,
                   help="timed steps (the median is reported)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 where supported)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.set_defaults(func=_bench)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model (resumes if --out holds an unfinished run)",
                       formatter_class=_Formatter,
                       description="Train with the paper's recipe (--recipe paper), the official "
                                   "code's (--recipe code) or a simple one for short runs "
                                   "(--recipe simple). Rerun the same command to resume; a "
                                   "finished run is a no-op. Options left unset take the recipe's "
                                   "value.")
    _add_run_options(p)
    _add_recipe_options(p)
    _add_progressive_options(p)
    _add_launch_options(p)
    p.set_defaults(func=_train)


def _add_run_options(p) -> None:
    p.add_argument("--model", required=True, type=model_name,
                   help="e.g. efficientnetv2_s, demo_v2_tiny (effnetv2 models lists them)")
    p.add_argument("--dataset", required=True,
                   help="synthetic, imagenette, imagenet, imagefolder, cifar10, ...")
    p.add_argument("--data-root", help="folder holding the data set (not needed for synthetic)")
    p.add_argument("--download", action="store_true",
                   help="download the data set if missing (needs internet)")
    p.add_argument("--out", required=True,
                   help="run directory: config.json, metrics.jsonl, last.pt, best.pt")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="epochs (with --progressive: of the whole schedule)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="images per batch and process")
    p.add_argument("--accumulate", type=positive_int, default=1,
                   help="batches per optimizer step (gradient accumulation): the global batch is "
                        "batch size x processes x this (the paper's: 4096), and the learning rate "
                        "and EMA follow it")
    p.add_argument("--image-size", type=image_size,
                   help="training size (default: the model's; 64 for synthetic)")
    p.add_argument("--eval-size", type=image_size, help="evaluation size (default: the model's)")
    p.add_argument("--train-samples", type=positive_int, help="synthetic only: training set size")
    p.add_argument("--difficulty", type=finite_float, help="synthetic only: 0 (easy) .. 1 (hard)")
    p.add_argument("--num-classes", type=positive_int,
                   help="classifier outputs (default: the data set's)")
    p.add_argument("--max-steps-per-epoch", type=positive_int,
                   help="cap the steps of each epoch (quick checks)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the order and every augmentation")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="drop unreadable images and count them")
    p.add_argument("--cache", action="store_true", default=None,
                   help="photos: decode once per image size into ~/.cache/effnetv2-mini "
                        "($EFFNETV2_CACHE), reused by later epochs and runs (fast small stages; "
                        "crops then come from the resized image)")
    p.add_argument("--decode-on-device", action="store_true",
                   help="photos on a GPU: decode JPEGs and augment on the GPU (torchvision.io), "
                        "CPU workers read bytes")
    p.add_argument("--batch-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="augment each training batch at once (same draws and pixels as image by "
                        "image); default: on a CPU with --cache or built-in data")
    p.add_argument("--eval-every", type=positive_int, default=1,
                   help="evaluate every N epochs (and after the last)")
    p.add_argument("--init-from",
                   help="fine-tune from: a checkpoint of ours, 'torchvision', or a state-dict file")
    p.add_argument("--freeze-backbone", action="store_true", help="train the classifier only")
    p.add_argument("--finetune-recipe", choices=["paper", "code"],
                   help="fine-tune with paper Table 8's recipe (on ImageNet: section 5.2's) or the "
                        "official ImagenetFt: a global batch of 512 (--batch-size per process at "
                        "most, the rest accumulated), 10,000 steps (ImageNet: 15 epochs), trained "
                        "and evaluated at the eval size; --epochs and --recipe are the recipe's")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--resume-with-changes", action="store_true",
                   help="continue the run in --out from its last checkpoint with changed "
                        "hyper-parameters (e.g. a lower --lr after a NaN, more --epochs); the "
                        "model, data set and batch size cannot change")


def _add_recipe_options(p) -> None:
    p.add_argument("--recipe", choices=["paper", "code", "simple", "short"], default="paper",
                   help="the training recipe: the paper's, the official code's, a simple one for "
                        "short CPU runs, or ours for a few epochs on small real data "
                        "(effnetv2_mini.paper.recipe)")
    p.add_argument("--preprocessing", choices=["official", "torchvision", "finetune"],
                   help="crop, RandAugment and eval crop: the official code's, torchvision's, or "
                        "the official fine-tuning one (default: the recipe's, official)")
    p.add_argument("--optimizer", choices=["rmsprop", "adamw", "sgd"], help="default: the recipe's")
    p.add_argument("--lr", type=positive_float,
                   help="peak learning rate (default: the recipe's, scaled by batch/256)")
    p.add_argument("--warmup-epochs", type=non_negative_float,
                   help="linear warm-up (default: the recipe's)")
    p.add_argument("--schedule", choices=["exponential", "cosine", "flat_cosine", "constant"],
                   help="the lr after the warm-up (default: the recipe's)")
    p.add_argument("--weight-decay", type=non_negative_float, help="default: the recipe's")
    p.add_argument("--label-smoothing", type=fraction, help="default: the recipe's")
    p.add_argument("--ema-decay", type=fraction,
                   help="EMA of the weights per step; 0 turns it off (default: the recipe's)")
    p.add_argument("--dropout", type=fraction, help="head dropout (default: the model's)")
    p.add_argument("--drop-path-rate", type=fraction,
                   help="stochastic depth of the last block (default: the recipe's)")
    p.add_argument("--randaug-magnitude", type=non_negative_float,
                   help="RandAugment strength; 0: off (default: 0; with --recipe paper/code on "
                        "efficientnetv2_s/m/l and no --progressive, the last stage's of the "
                        "recipe's schedule)")
    p.add_argument("--mixup-alpha", type=mix_alpha,
                   help="MixUp strength; 0: off (default: as --randaug-magnitude)")
    p.add_argument("--cutmix-alpha", type=mix_alpha, default=0.0, help="CutMix strength; 0: off")


def _add_progressive_options(p) -> None:
    from .paper.progressive import VARIANTS

    p.add_argument("--progressive", metavar="paper|code|SPEC",
                   help="progressive learning (paper section 4, Algorithm 1): 'paper' (Table 6) or "
                        "'code' (the official schedule) for efficientnetv2_s/m/l, or a SPEC for "
                        "any model, e.g. \"stages=4 size=128:300 randaug=5:15 mixup=0:0 "
                        "dropout=0.1:0.3\" (first:last stage; sizes in between rounded to 8). "
                        "--epochs is the whole schedule's; --eval-size stays the model's unless "
                        "given")
    p.add_argument("--variant", choices=VARIANTS, default="progressive",
                   help="with --progressive: the paper's ablations (same epochs and stages)")


def _add_launch_options(p) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the model (compile time is not counted in an epoch's "
                        "images/s)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="autocast to bf16 (fp16 on GPUs without bf16) (default: on for CUDA, off "
                        "on a CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on for CUDA and CPUs: measured "
                        "faster on both)")
    p.add_argument("--workers", type=non_negative_int, default=2,
                   help="data-loading worker processes")
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="processes (GPUs) per node: > 1 launches torchrun")
    p.add_argument("--nnodes", type=positive_int, default=1,
                   help="nodes of a multi-node run (torchrun rendezvous)")
    p.add_argument("--node-rank", type=non_negative_int, default=0,
                   help="this node's rank in a multi-node run")
    p.add_argument("--rdzv-endpoint", help="host:port of node 0, for a multi-node run")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a data set",
                       formatter_class=_Formatter)
    p.add_argument("--checkpoint", required=True, help="a best.pt or last.pt of a run")
    p.add_argument("--dataset", required=True,
                   help="synthetic, imagenette, imagenet, imagefolder, cifar10, ...")
    p.add_argument("--data-root", help="folder holding the data set")
    p.add_argument("--image-size", type=image_size,
                   help="evaluation size (default: the checkpoint's eval size)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step")
    p.add_argument("--workers", type=non_negative_int, default=2,
                   help="data-loading worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--ema", action="store_true",
                   help="evaluate the EMA weights (an error if the run kept none)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="drop unreadable images and count them")
    p.set_defaults(func=_eval)


def _add_nas(sub) -> None:
    p = sub.add_parser("nas",
                       help="training-aware architecture search (paper section 3.3), resumable",
                       formatter_class=_Formatter,
                       description="Sample candidates, train each briefly, rank by A * S^w * P^v. "
                                   "Rerun the same command to resume; start it on several machines "
                                   "with one --storage URL to share the study.")
    p.add_argument("--out", required=True, help="search directory (holds nas.db and candidates/)")
    p.add_argument("--trials", type=positive_int, required=True,
                   help="completed candidates to reach")
    p.add_argument("--space", choices=["cpu", "b4"], default="cpu", help="the search space")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/nas.db)")
    p.add_argument("--study", default="nas", help="study name inside the storage")
    p.add_argument("--sampler", choices=["random", "tpe"], default="random",
                   help="random (the paper's) or TPE")
    p.add_argument("--seed", type=int,
                   help="sampler seed (workers sharing a study may use the same one)")
    p.add_argument("--dataset", default="synthetic", help="proxy-training data set")
    p.add_argument("--data-root", help="folder holding the data set")
    p.add_argument("--epochs", type=positive_int, default=4,
                   help="proxy training epochs per candidate")
    p.add_argument("--image-size", type=image_size, default=48,
                   help="reduced proxy training (and evaluation) size")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step")
    p.add_argument("--train-samples", type=positive_int, default=2000,
                   help="synthetic only: training set size")
    p.add_argument("--recipe", choices=["paper", "code", "simple"], default="simple",
                   help="proxy training recipe")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="data-loading worker processes")
    p.add_argument("--w", type=finite_float, default=-0.07,
                   help="exponent of the normalized step time")
    p.add_argument("--v", type=finite_float, default=-0.05, help="exponent of the parameter count")
    p.add_argument("--top", type=positive_int, default=5, help="candidates to print")
    p.set_defaults(func=_nas)


def _add_nas_summary(sub) -> None:
    p = sub.add_parser("nas-summary",
                       help="the top candidates of a search, as block strings with A, S, P, reward",
                       formatter_class=_Formatter)
    p.add_argument("--out", required=True, help="the search directory")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/nas.db)")
    p.add_argument("--study", default="nas", help="study name inside the storage")
    p.add_argument("--top", type=positive_int, default=5, help="candidates to print")
    p.add_argument("--w", type=finite_float,
                   help="re-rank with another exponent (default: the study's)")
    p.add_argument("--v", type=finite_float,
                   help="re-rank with another exponent (default: the study's)")
    p.set_defaults(func=_nas_summary)


def _without_worker_traceback(message: str) -> str:
    """A data-loader worker's error arrives as "Caught X in DataLoader worker process N. Original
    Traceback ...": keep the original message (its last line, without the exception's module
    path)."""
    if "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last and "." in last.split(": ", 1)[0] else last


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .engine.errors import CheckpointError

    try:
        args.func(args)
    # OSError: e.g. --out is a file
    except (KeyError, ValueError, OSError, RuntimeError, CheckpointError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"effnetv2: error: {_without_worker_traceback(str(message))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
