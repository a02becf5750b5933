"""``python -m reproduce run PLAN | report PLAN | publish RUN | book [RUN] | clean NB | plans``"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .plans import PlanError, available_plans, load_plan
from .runlock import RunnerBusyError, Stopped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reproduce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a plan's notebooks (resumable)")
    p.add_argument("plan", help=f"a plan name ({', '.join(available_plans())}), the path of a plan file, or auto "
                               "(quick if Imagenette and a GPU are available, else smoke)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks of the plan")
    p.add_argument("--force", action="store_true", help="rerun notebooks that are already done")
    p.add_argument("--dry-run", action="store_true", help="print what would run and why, run nothing")
    p.add_argument("--data-root", help="data folder, passed to notebooks that take data_root")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ...; passed to notebooks that take device")
    p.add_argument("--dataset", help="use this data set instead of the plan's photos (e.g. imagefolder with --data-root "
                                     "DIR holding train/ and val/ class folders); the built-in sets stay")
    p.add_argument("--runs-dir", default=None, help="where runs/<plan>/ goes (default: ./runs of the repo)")
    p.add_argument("--rehearse", action="store_true",
                   help="run every notebook through the plan's code paths for one or two steps per stage at tiny sizes, "
                        "on miniature data, into runs/<plan>-rehearsal/ (minutes on a CPU; claims nothing; "
                        "deletes its checkpoints once each notebook is done)")

    p = sub.add_parser("report", help="write runs/<plan>/report.md and report.html from the results that exist")
    p.add_argument("plan")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--headline", type=Path, metavar="README",
                   help="also write notebook 07's headline sentence into README between its "
                        "headline markers")

    p = sub.add_parser("publish", help="copy a run's executed notebooks (progress bars cut, "
                                       "paths of this machine replaced), report.md, figures and an "
                                       "index page into a folder GitHub renders")
    p.add_argument("run_dir", type=Path, help="a run directory, e.g. runs/laptop")
    p.add_argument("--to", type=Path, default=None,
                   help="the folder (default: published/<plan>; replaced if it holds an earlier "
                        "publication)")

    p = sub.add_parser("book", help="build a static site (Sphinx, MyST-NB, Sphinx Book Theme) "
                                    "from a published folder or a run directory: no execution, "
                                    "no network")
    p.add_argument("run_dir", type=Path, nargs="?", default=None,
                   help="a published folder or a run directory (default: published/laptop)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to build (default: build/book; the site is OUT/html)")

    p = sub.add_parser("clean", help="strip notebook outputs except cells marked # NBVAL_CHECK_OUTPUT")
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--check", action="store_true", help="only report notebooks that are not clean")

    sub.add_parser("plans", help="list the plans")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "plans":
            for name in available_plans():
                print(f"{name:<17} {load_plan(name).description}")
            return 0
        if args.command == "clean":
            from .nbclean import clean_file

            found = [p for nb in args.notebooks for p in clean_file(nb, check=args.check)]
            print("\n".join(found) if found else "notebooks are clean")
            return 1 if found else 0
        if args.command == "publish":
            from .publish import publish

            print(f"published: {publish(args.run_dir, args.to)}")
            return 0
        if args.command == "book":
            from .book import build_book

            print(f"book: {build_book(args.run_dir, args.out)}")
            return 0
        return _run_or_report(args)
    except (PlanError, ValueError, RunnerBusyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped) as stop:
        why = f" ({stop.signal_name})" if isinstance(stop, Stopped) else ""
        print(f"\ninterrupted{why}: finished notebooks are kept; rerun the same command to resume", file=sys.stderr)
        return 130 if isinstance(stop, KeyboardInterrupt) else 128 + int(getattr(signal, stop.signal_name))


def _run_or_report(args) -> int:
    """``run PLAN`` or ``report PLAN`` (``auto`` picks quick or smoke, saying why)."""
    from .runner import RUNS_DIR

    if args.plan == "auto":
        from .choose import choose_plan
        from .inputs import refuse_empty_data_root

        refuse_empty_data_root(getattr(args, "data_root", None))
        args.plan, why = choose_plan(getattr(args, "data_root", None) or "data")
        if args.plan == "quick":
            print(f"plan auto -> quick: {why}")
        else:
            print(why, file=sys.stderr)
    plan = load_plan(args.plan)
    runs_dir = Path(args.runs_dir) if args.runs_dir else RUNS_DIR
    if args.command == "report":
        from .report import write_report

        print(write_report(plan, runs_dir / plan.name))
        if args.headline:
            from .report import headline_of, write_headline

            if not write_headline(args.headline, headline_of(runs_dir / plan.name, plan.name)):
                print(f"error: no headline written to {args.headline}: it needs the headline "
                      "markers and the plan's notebook 07 results", file=sys.stderr)
                return 2
            print(f"headline written to {args.headline}")
        return 0
    from .runner import run_plan

    return run_plan(plan, only=args.only, force=args.force, dry_run=args.dry_run, data_root=args.data_root,
                    device=args.device, runs_dir=runs_dir, rehearse=args.rehearse, dataset=args.dataset)


if __name__ == "__main__":
    sys.exit(main())
