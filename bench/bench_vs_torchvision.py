"""Benchmark: our EfficientNetV2 against torchvision's, same machine, same run, interleaved rounds.

    python bench/bench_vs_torchvision.py                      # CPU, V2-S, 128 px, batch 16, eager fp32 both
    python bench/bench_vs_torchvision.py --ours-defaults --json out.json   # + ours as `effnetv2 train` runs it
    python bench/bench_vs_torchvision.py --model efficientnet_b0 --image-size 64 --ours-defaults  # the laptop plan's scale
    python bench/bench_vs_torchvision.py --candidates          # ours under each speed setting (picks the defaults)
    python bench/bench_vs_torchvision.py --ours-defaults --compile   # + ours with the defaults and torch.compile
    python bench/bench_vs_torchvision.py --device cuda --amp --channels-last --batch-size 64

Each round times every entry back to back (the order rotates), so slow drift of the machine affects all alike; the
script prints the median images/s over rounds, each entry's ratio to torchvision's model (ratio of the medians), and
the median of the per-round ratios (each round times its entries back to back: the paired figure, steadier when
the machine's speed drifts). Entries:

- ``ours`` and ``torchvision``: equal settings (``--amp``, ``--channels-last`` for both);
- ``--ours-defaults``: ``ours (defaults)``, with the speed settings the training engine picks on this device
  (:func:`effnetv2_mini.engine.devices.speed_defaults`), against ``torchvision (eager fp32)``, torchvision's model
  as it comes (fp32, contiguous memory, not compiled);
- ``--candidates``: ours in fp32, channels_last, bf16 autocast and both, to choose the defaults from;
- ``--compile``: ``ours (defaults, compiled)``, the defaults under ``torch.compile`` (inductor). Its compile time
  (the first two steps of each mode, timed before the rounds) is reported apart, with the images it must train
  before the faster steps have paid for it (``compile_break_even_images``: compile seconds over the seconds saved
  per image against ``ours (defaults)``; null if compiled steps are not faster).

``--json OUT`` writes every median, ``ratio_equal_settings`` and ``ratio_defaults_vs_torchvision_eager`` (training
steps). Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torchvision

from effnetv2_mini import build_model
from effnetv2_mini.argtypes import image_size, model_name, non_negative_int, positive_int
from effnetv2_mini.engine.devices import pick_device, speed_defaults
from effnetv2_mini.measure import benchmark_throughput

CANDIDATES = {"ours (fp32)": (False, False), "ours (channels_last)": (False, True), "ours (bf16)": (True, False),
              "ours (bf16, channels_last)": (True, True)}


def entries(args, device) -> dict:
    """name -> (model, amp, channels_last); each model its own copy, built from the same seed."""
    from effnetv2_mini.compat import TORCHVISION_NAMES

    if args.model not in TORCHVISION_NAMES:
        raise SystemExit(f"bench_vs_torchvision: torchvision has no twin of {args.model!r}; models with one: "
                         f"{', '.join(TORCHVISION_NAMES)} (the laptop plan's scale: --model efficientnet_b0)")

    def ours():
        torch.manual_seed(0)
        return build_model(args.model).to(device)

    def theirs():
        torch.manual_seed(0)
        return torchvision.models.get_model(TORCHVISION_NAMES[args.model]).to(device)

    table = {"ours": (ours(), args.amp, args.channels_last), "torchvision": (theirs(), args.amp, args.channels_last)}
    if args.ours_defaults or args.candidates or args.compile:
        if args.amp or args.channels_last:
            table["torchvision (eager fp32)"] = (theirs(), False, False)
    defaults = speed_defaults(device)
    if args.ours_defaults or args.compile:
        table["ours (defaults)"] = (ours(), defaults["amp"], defaults["channels_last"])
    if args.candidates:
        table.update({name: (ours(), amp, cl) for name, (amp, cl) in CANDIDATES.items()})
    if args.compile:
        table["ours (defaults, compiled)"] = (torch.compile(ours()), defaults["amp"], defaults["channels_last"])
    return table


def compile_seconds(args, table, mode: str) -> float | None:
    """Wall-clock of the compiled entry's first two steps in ``mode`` (compilation and one step), or None."""
    if "ours (defaults, compiled)" not in table:
        return None
    model, amp, channels_last = table["ours (defaults, compiled)"]
    start = time.perf_counter()
    benchmark_throughput(model, args.image_size, args.batch_size, mode=mode, warmup=1, repeats=1, amp=amp,
                         channels_last=channels_last)
    return time.perf_counter() - start


def break_even_images(compile_s: float, compiled_rate: float, eager_rate: float) -> float | None:
    """Images to train before ``compile_s`` is won back by steps at ``compiled_rate`` instead of ``eager_rate``."""
    saved_per_image = 1.0 / eager_rate - 1.0 / compiled_rate
    return compile_s / saved_per_image if saved_per_image > 0 else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=model_name, default="efficientnetv2_s",
                        help="ours; torchvision's twin is looked up")
    parser.add_argument("--image-size", type=image_size, default=128)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed steps per round")
    parser.add_argument("--warmup", type=non_negative_int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 where supported), both models")
    parser.add_argument("--channels-last", action="store_true", help="both models")
    parser.add_argument("--ours-defaults", action="store_true", help="also ours with the engine's defaults on this device")
    parser.add_argument("--candidates", action="store_true", help="also ours under each speed setting")
    parser.add_argument("--compile", action="store_true",
                        help="also ours with the defaults under torch.compile (implies --ours-defaults)")
    parser.add_argument("--modes", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    table = entries(args, device)
    eager = "torchvision (eager fp32)" if "torchvision (eager fp32)" in table else "torchvision"
    results = {}
    compile_s = {}
    for mode in args.modes:
        compile_s[mode] = compile_seconds(args, table, mode)
        speeds = {name: [] for name in table}
        for round_index in range(args.rounds):
            names = list(table)
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                model, amp, channels_last = table[name]
                r = benchmark_throughput(model, args.image_size, args.batch_size, mode=mode, warmup=args.warmup,
                                         repeats=args.repeats, amp=amp, channels_last=channels_last)
                speeds[name].append(r["images_per_sec"])
        results[mode] = {name: {"images_per_sec": statistics.median(s),
                                "ratio_to_torchvision": statistics.median(s) / statistics.median(speeds[eager]),
                                "per_round_ratios": [a / b for a, b in zip(s, speeds[eager])],
                                "median_round_ratio": statistics.median(a / b for a, b in zip(s, speeds[eager]))}
                         for name, s in speeds.items()}
        results[mode]["ours"]["ratio_to_torchvision"] = (statistics.median(speeds["ours"])
                                                         / statistics.median(speeds["torchvision"]))
    setting = (
        f"{args.model}, {args.image_size}px, batch {args.batch_size}, {device}"
        f"{', AMP' if args.amp else ''}{', channels_last' if args.channels_last else ''} (equal settings); "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; {args.rounds} rounds x {args.repeats} steps"
    )
    print(setting)
    print(f"{'mode':<6} {'entry':<28} {'img/s':>8} {'ratio':>6}  per-round ratios: median, range "
          f"(vs {eager}; ratio of ours: vs torchvision)")
    for mode, rows in results.items():
        for name, r in rows.items():
            rounds = r["per_round_ratios"]
            print(f"{mode:<6} {name:<28} {r['images_per_sec']:>8.1f} {r['ratio_to_torchvision']:>6.3f}  "
                  f"{r['median_round_ratio']:.3f}, {min(rounds):.3f}..{max(rounds):.3f}")
    summary = {"setting": setting, "results": results}
    if args.compile:
        summary["compile_seconds"] = compile_s
        summary["compile_break_even_images"] = {
            mode: break_even_images(compile_s[mode], rows["ours (defaults, compiled)"]["images_per_sec"],
                                    rows["ours (defaults)"]["images_per_sec"])
            for mode, rows in results.items()}
        for mode in results:
            images = summary["compile_break_even_images"][mode]
            print(f"{mode}: compile (first two steps) {compile_s[mode]:.1f} s; pays for itself after "
                  f"{'never' if images is None else f'{images:,.0f} images'}")
    if "train" in results:
        summary["ratio_equal_settings"] = results["train"]["ours"]["ratio_to_torchvision"]
        if "ours (defaults)" in results["train"]:
            summary["ratio_defaults_vs_torchvision_eager"] = results["train"]["ours (defaults)"]["ratio_to_torchvision"]
            summary["defaults"] = speed_defaults(device)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return summary


if __name__ == "__main__":
    main()
