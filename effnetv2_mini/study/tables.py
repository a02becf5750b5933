"""Plain-text tables: deterministic, so that nbval can compare them and a terminal can show them."""

from __future__ import annotations

__all__ = ["format_value", "format_table", "schedule_table"]


def format_value(value) -> str:
    """One table cell: "-" for None, thousands separators, two decimals
    (scientific notation below 0.01)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2e}"  # learning rates and the like
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    """A fixed-width text table: numbers right-aligned, text left-aligned."""
    headers = headers or columns
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def schedule_table(schedule) -> str:
    """A progressive schedule (:class:`~effnetv2_mini.paper.progressive.ProgressiveSchedule`) as a
    table, one row per stage: epochs, image size and regularization (the
    layout of the paper's Table 6)."""
    rows = [{"stage": s.index + 1, "epochs": f"{s.start_epoch + 1}-{s.start_epoch + s.epochs}",
             "size": s.image_size, "dropout": s.dropout, "randaug": s.randaug_magnitude,
             "mixup": s.mixup_alpha}
            for s in schedule.stages]
    header = f"{schedule.variant} schedule ({schedule.source}), eval at {schedule.eval_size}px"
    if schedule.variant == "random":
        header += f"; a stage drawn at random every {schedule.every} epoch(s)"
    return (header + "\n"
            + format_table(rows, ["stage", "epochs", "size", "dropout", "randaug", "mixup"]))
