"""The Markdown table and the targets block of scripts/udp-audio-quality, from rows of
per-seed figures: each row is a dict with signal, condition, column (a mode or REFERENCE),
seed, lost_fraction and the measures pesq_nb, pesq_wb, lsd_db (None when not measured)."""
import math
import statistics

REFERENCE = "Appendix I (reference)"
RANDOM_10 = "random 10 %"

# (key, label, higher is better)
MEASURES = [
    ("pesq_nb", "PESQ-NB", True),
    ("pesq_wb", "PESQ-WB", True),
    ("lsd_db", "LSD dB", False),
]


def mean_sd(values):
    """Mean and sample standard deviation (0 for one value); (nan, nan) for none."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], 0.0
    return statistics.fmean(values), statistics.stdev(values)


def figures(rows, signal, condition, column, key):
    return [r[key] for r in rows
            if r["signal"] == signal and r["condition"] == condition and r["column"] == column
            and r.get(key) is not None]


def in_order(items):
    seen = []
    for i in items:
        if i not in seen:
            seen.append(i)
    return seen


def summary(rows, columns):
    """One entry per signal × condition × measure that has figures: per column mean, sd and n,
    the best column (by mean) and the measured loss (mean %)."""
    out = []
    for signal in in_order(r["signal"] for r in rows):
        for condition in in_order(r["condition"] for r in rows if r["signal"] == signal):
            lost = [r["lost_fraction"] * 100 for r in rows
                    if r["signal"] == signal and r["condition"] == condition
                    and r["column"] == columns[0]]
            for key, label, higher in MEASURES:
                cells = {}
                for c in columns:
                    v = figures(rows, signal, condition, c, key)
                    if v:
                        m, sd = mean_sd(v)
                        cells[c] = {"mean": m, "sd": sd, "n": len(v)}
                if not cells:
                    continue
                pick = max if higher else min
                best = pick(cells, key=lambda c: cells[c]["mean"])
                out.append({"signal": signal, "condition": condition, "measure": label,
                            "key": key, "loss_pct": mean_sd(lost)[0], "cells": cells,
                            "best": best})
    return out


def markdown(entries, columns, seeds):
    lines = [f"{seeds} seed(s) per condition; each cell is mean ± sample standard deviation "
             "over them; best mean per row in bold. PESQ-NB (ITU-T P.862) and PESQ-WB "
             "(P.862.2): higher is better; LSD (log-spectral distance, `udp-audio eval`): "
             "lower is better.", ""]
    lines.append("| signal | loss (measured) | measure | " + " | ".join(columns) + " |")
    lines.append("|---|---|---|" + "---:|" * len(columns))
    for e in entries:
        cells = []
        for c in columns:
            v = e["cells"].get(c)
            if v is None:
                cells.append("–")
                continue
            text = f"{v['mean']:.2f} ± {v['sd']:.2f}"
            cells.append(f"**{text}**" if c == e["best"] else text)
        lines.append(f"| {e['signal']} | {e['condition']} ({e['loss_pct']:.1f} %) | "
                     f"{e['measure']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_difference(rows, signal, condition, a, b, key):
    """Per-seed a − b (same losses), as (mean, sd, n)."""
    def by_seed(col):
        return {r["seed"]: r[key] for r in rows
                if r["signal"] == signal and r["condition"] == condition and r["column"] == col
                and r.get(key) is not None}
    x, y = by_seed(a), by_seed(b)
    d = [x[s] - y[s] for s in x if s in y]
    m, sd = mean_sd(d)
    return m, sd, len(d)


def targets(rows, speech_signals, music_signal):
    """The issue's targets, each with its figure and met/missed (None: shown, no target)."""
    out = []
    conditions = in_order(r["condition"] for r in rows)

    def add(condition, signal, figure, a, b, key, test, target):
        m, sd, n = paired_difference(rows, signal, condition, a, b, key)
        if n == 0:
            return
        met = None if test is None else bool(test(m))
        out.append({"condition": condition, "signal": signal, "figure": figure, "mean": m,
                    "sd": sd, "n": n, "target": target, "met": met})

    for c in conditions:
        at10 = c == RANDOM_10
        for s in speech_signals:
            if at10:
                add(c, s, "bridge − reference, PESQ-NB", "bridge", REFERENCE, "pesq_nb",
                    lambda m: m >= 0.4, "≥ +0.40")
                add(c, s, "bridge − silence, PESQ-NB", "bridge", "silence", "pesq_nb",
                    lambda m: m >= 1.0, "≥ +1.00")
            else:
                add(c, s, "bridge − reference, PESQ-NB", "bridge", REFERENCE, "pesq_nb",
                    lambda m: m >= 0.0, "≥ 0")
                add(c, s, "bridge − silence, PESQ-NB", "bridge", "silence", "pesq_nb",
                    None, "–")
            add(c, s, "g711 − reference, PESQ-NB", "g711", REFERENCE, "pesq_nb",
                lambda m: abs(m) <= 0.05, "within ±0.05")
            add(c, s, "g711 − reference, PESQ-WB", "g711", REFERENCE, "pesq_wb",
                lambda m: abs(m) <= 0.05, "within ±0.05")
        if music_signal:
            add(c, music_signal, "bridge − g711, LSD dB", "bridge", "g711", "lsd_db",
                lambda m: m <= 0.0, "≤ 0")
    return out


def targets_markdown(entries):
    lines = ["Targets (paired per seed: mean ± sd of the difference on the same losses):", "",
             "| condition | signal | figure | value | target | |",
             "|---|---|---|---:|---|---|"]
    for t in entries:
        verdict = "–" if t["met"] is None else ("met" if t["met"] else "**missed**")
        lines.append(f"| {t['condition']} | {t['signal']} | {t['figure']} | "
                     f"{t['mean']:+.2f} ± {t['sd']:.2f} | {t['target']} | {verdict} |")
    met = sum(1 for t in entries if t["met"])
    judged = sum(1 for t in entries if t["met"] is not None)
    lines += ["", f"{met} of {judged} targets met."]
    return "\n".join(lines)
