"""The comparison's report folder: REPORT.md, results.json, results.csv, loss_curves.png, form.png.

``results.json`` has the shape
``{"rows": [{"name", "impl", "model", "params", "train_seconds", "seconds_per_epoch",
"final_train_loss", "best_val_ppl", "best_epoch", "val_top1", "val_top5", ...}],
"config": {...}, "machine": {...}, ...}``; ``results.csv`` holds the same rows. Each row also carries its
short sample's novelty (``sample_novelty``, ...), and the form and repetition of its long text
(``wordrnn.bench.written``: ``form`` and ``repetition``, the lines REPORT.md prints; the distances and figures
``form_words_per_line_distance``, ``repeated_4grams``, ``distinct_2``, ...; ``written_detail``, both form
distributions and the poems' repetition range, as ``WrittenMeasure.to_json`` writes them).
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wordrnn.bench.lab import SAMPLE_SETTINGS, SAMPLE_TOKENS, Entry
from wordrnn.bench.written import SAMPLES, TOKENS
from wordrnn.core.config import Config
from wordrnn.frameworks import LABELS
from wordrnn.run.folder import atomic_write_bytes, atomic_write_text

CSV_COLUMNS = (
    "name", "impl", "model", "variant", "params", "epochs", "train_seconds", "seconds_per_epoch",
    "first_epoch_seconds", "final_train_loss", "best_val_loss", "best_val_ppl", "best_val_ppl_known",
    "best_epoch", "val_top1", "val_top5", "time_ratio_vs_torch",
    "form_words_per_line_distance", "form_lines_per_stanza_distance", "repeated_4grams", "distinct_1", "distinct_2",
    "repetition_within_poems", "written_tokens",
)
COLORS = {"numpy": "tab:blue", "torch": "tab:orange", "jax": "tab:green", "recipe": "tab:purple"}
# Implementations that agree draw on top of each other: wide lines first, so each stays visible as a stripe.
WIDTHS = {"numpy": 5.0, "torch": 3.0, "jax": 1.2, "recipe": 1.2}


def _json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_results(out: Path, entries: list[Entry], payload: dict[str, Any]) -> None:
    """results.json (rows plus everything in ``payload``) and results.csv (the rows)."""
    rows = [e.row for e in entries]
    document = {"rows": rows, **payload}
    atomic_write_text(out / "results.json", json.dumps(_json_safe(document), indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())


def plot_loss_curves(out: Path, entries: list[Entry]) -> None:
    """One panel per model: every implementation's training (solid) and validation (dashed) loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    models = list(dict.fromkeys(e.row["model"] for e in entries if e.curves))
    baseline = next((e for e in entries if e.row["impl"] == "kneser-ney"), None)
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(6.5 * max(len(models), 1), 4.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        for e in entries:
            if e.row["model"] != model or not e.curves:
                continue
            key = e.row["variant"] if e.row["variant"] in COLORS else e.row["impl"]
            style = {"color": COLORS[key], "lw": WIDTHS[key], "ms": 2 + WIDTHS[key]}
            epochs = [c["epoch"] for c in e.curves]
            label = LABELS[e.row["impl"]] + ("" if e.row["variant"] == "benchmark" else f" ({e.row['variant']})")
            ax.plot(epochs, [c["train_loss"] for c in e.curves], "-o", label=f"{label} train", **style)
            ax.plot(epochs, [c["val_loss"] for c in e.curves], "--s", label=f"{label} val", **style)
        if baseline is not None:
            ax.axhline(baseline.row["best_val_loss"], color="gray", ls=":", lw=1.5,
                       label=f"{baseline.row['name']} val")
        ax.set_title(f"{model} model")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy (nats)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even for one
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training (solid) and validation (dashed) loss; same data, initial weights and batches, "
                 "so agreeing implementations overlap")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out / "loss_curves.png", buffer.getvalue())


def _form(e: Entry) -> dict[str, Any] | None:
    return e.row.get("written_detail", {}).get("form")


def plot_form(out: Path, entries: list[Entry]) -> None:
    """Words per line: the training poems' histogram beside each run's long text's, as shares of their lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    shown = [e for e in entries if _form(e)]
    if not shown:
        return
    poems = _form(shown[0])["words_per_line"]["poems"]
    top = max(len(poems["histogram"]), *(len(_form(e)["words_per_line"]["sample"]["histogram"]) for e in shown))
    cols = min(len(shown), 3)
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharex=True, sharey=True)
    x = np.arange(top)

    def shares(histogram: list[int]) -> np.ndarray:
        counts = np.zeros(top)
        counts[:len(histogram)] = histogram
        return counts / max(counts.sum(), 1)

    for ax, e in zip(axes.flat, shown, strict=False):
        wpl = _form(e)["words_per_line"]
        ax.bar(x - 0.2, shares(poems["histogram"]), 0.4, color="gray", label=f"training poems ({poems['n']} lines)")
        ax.bar(x + 0.2, shares(wpl["sample"]["histogram"]), 0.4, color="tab:orange",
               label=f"written ({wpl['sample']['n']} lines)")
        distance = "—" if wpl["distance"] is None else f"{wpl['distance']:.1f}"
        ax.set_title(f"{e.row['name']}: off by {distance} words", fontsize=9)
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("words in the line")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of lines")
    fig.suptitle(f"Words per line: the training poems and each run's {SAMPLES} texts of {TOKENS} tokens "
                 "(complete lines only)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out / "form.png", buffer.getvalue())


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def results_table(entries: list[Entry]) -> str:
    lines = [
        "| implementation | model | parameters | training s | s / epoch | final train loss | best val loss "
        "| best val ppl (epoch) | val top-1 | val top-5 | time vs PyTorch |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in entries:
        r = e.row
        impl = LABELS[r["impl"]] + ("" if r["variant"] in ("benchmark", "baseline") else f" ({r['variant']})")
        epoch = f" ({r['best_epoch']})" if r["best_epoch"] is not None else ""
        lines.append(
            f"| {impl} | {r['model']} | {r['params']:,} | {_fmt(r['train_seconds'], '.1f')} "
            f"| {_fmt(r['seconds_per_epoch'], '.2f')} | {_fmt(r['final_train_loss'], '.3f')} "
            f"| {_fmt(r['best_val_loss'], '.3f')} | {_fmt(r['best_val_ppl'], '.1f')}{epoch} "
            f"| {_fmt(r['val_top1'], '.1%')} | {_fmt(r['val_top5'], '.1%')} "
            f"| {_fmt(r['time_ratio_vs_torch'], '.2f')} |"
        )
    return "\n".join(lines)


def _key_values(values: dict[str, Any]) -> str:
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {json.dumps(v) if isinstance(v, dict | list) else v} |" for k, v in values.items()]
    return "\n".join(lines)


def _verse(text: str) -> str:
    return "```text\n" + text.strip("\n") + "\n```"


def results_notes(entries: list[Entry], payload: dict[str, Any]) -> str:
    """What the results table's columns mean, and how the validation and the baseline were scored."""
    config, data, orders = payload["config"], payload["dataset"], payload["kneser_ney_orders"]
    baseline = any(e.row["impl"] == "kneser-ney" for e in entries)
    unknown = ("words never seen in training" if config["min_freq"] <= 1
               else f"words seen fewer than {config['min_freq']} times in training")
    return "\n".join([
        "- Every RNN trains on the same data, split and vocabulary, from the same initial weights and "
        "with the same batches (one seed), through the one training loop; only the framework differs.",
        "- *training s*: the epochs' training time, evaluation excluded. *s / epoch*: the median epoch "
        "after the first, which carries the warm-up (JAX compiles then; `first_epoch_seconds` in results.csv).",
        "- *time vs PyTorch*: seconds per epoch over PyTorch's on the same model (below 1 is faster). "
        "Measured in one process, one run after another, on a machine that may be shared: "
        "compare ratios, not absolute times.",
        f"- Validation: {data['val_windows']:,} targets from {data['val_poems']} held-out poems; "
        f"{data['val_oov_rate']:.1%} of them are `<unk>` ({unknown}). Perplexity counts every target, "
        "`<unk>` included; `best_val_ppl_known` in results.csv counts only in-vocabulary targets. "
        "Top-1/top-5 are at the best epoch.",
        *([f"- Kneser-Ney: interpolated, modified (three discounts per order), chosen on validation among "
           f"orders {', '.join(f'{n} (ppl {p:.1f})' for n, p in orders.items())}; scored on exactly the "
           f"same targets. Its *parameters* are stored n-grams; its *training s* is counting them."]
          if baseline else []),
    ])


RECIPE_FLAGS = {"recipe": "--recipe quality-single"}


def recipe_section(payload: dict[str, Any]) -> list[str]:
    recipes = payload.get("recipes") or ({"recipe": payload["recipe"]} if payload.get("recipe") else {})
    if not recipes:
        return []
    return ["## The quality recipe",
            *(f"- {variant}: {LABELS[payload['recipe_impl']]}, `{RECIPE_FLAGS[variant]}` (docs/QUALITY.md): "
              f"the benchmark configuration with `{json.dumps(settings)}`: one member of `--recipe quality`, "
              "whose three members take three times as long. The recipe's neural cache is chosen when a run is "
              "exported with `python -m export.onnx --cache-auto`; the export below has none, so that its greedy "
              "text can be held to the framework's." for variant, settings in recipes.items())]


def setup_section(payload: dict[str, Any]) -> list[str]:
    """The configuration, the data and the machine the report was made with."""
    config, data, machine = payload["config"], payload["dataset"], payload["machine"]
    # The table is the benchmark rows'; the recipe row (often the best run, and then the exported one) is
    # another model, so its differences are listed beside it rather than left for the reader to guess.
    recipe = {k: v for k, v in (payload.get("recipe") or {}).items() if config.get(k) != v}
    return [
        "## Configuration",
        *(["The benchmark rows:"] if recipe else []),
        _key_values({k: v for k, v in config.items() if k not in ("extra", "data")}),
        *([f"The recipe row ({LABELS[payload['recipe_impl']]}) differs in:", _key_values(recipe)] if recipe else []),
        _key_values({"corpus": data["source"], "vocabulary": data["vocab_size"],
                     "training poems / tokens / windows":
                         f"{data['train_poems']} / {data['train_tokens']:,} / {data['train_windows']:,}",
                     "validation poems / windows": f"{data['val_poems']} / {data['val_windows']:,}"}),
        "## Machine",
        _key_values({k: v for k, v in machine.items() if k != "versions"}),
        _key_values(machine["versions"]),
    ]


def samples_section(entries: list[Entry], payload: dict[str, Any]) -> list[str]:
    """Every run's short sample with its novelty, and the form and repetition of its long text."""
    parts = [
        "## Samples",
        f"Every run, prompt `{payload['prompt']}`, {SAMPLE_TOKENS} tokens, temperature "
        f"{SAMPLE_SETTINGS.temperature}, top-p {SAMPLE_SETTINGS.top_p}, seed {SAMPLE_SETTINGS.seed}, "
        "from the best epoch's weights. Beside each: the share of its 4-grams found in the training poems and "
        "its longest run copied verbatim from one of them (the prompt not counted; wordrnn.bench.novelty). "
        f"A sample that short holds 3 to 5 lines, so form and repetition are measured on {SAMPLES} more texts of "
        f"{TOKENS} tokens from the same settings ({SAMPLES * TOKENS:,} tokens a run; one-word prompts, the same "
        "for every run; wordrnn.bench.written): words per line and lines per stanza of their complete lines and "
        "stanzas beside the training poems', with how far apart the two distributions are (Wasserstein "
        "distance: by how many words a line is off, on average; wordrnn.bench.form); and their mean share of "
        "repeated 4-grams, distinct-1 and distinct-2 beside the 5th-95th percentile of pieces of the training "
        "poems as long as a text (wordrnn.core.repetition).",
        *(["![words per line, training poems and each run's texts](form.png)"] if any(_form(e) for e in entries)
          else []),
    ]
    for e in entries:
        lines = [e.row.get(key) for key in ("sample_novelty", "form", "repetition")]
        parts += [f"### {e.row['name']}", *(f"*{line}*" for line in lines if line), _verse(e.sample)]
    return parts


def onnx_section(payload: dict[str, Any]) -> list[str]:
    """The best run's export: its check against the source framework and its samples from onnxruntime."""
    onnx = payload.get("onnx")
    if not onnx:
        return []
    return [
        "## ONNX",
        f"The run with the lowest validation loss, {onnx['source']}, exported to `{onnx['path']}` "
        f"({onnx['bytes']:,} bytes): onnx.checker passed, and onnxruntime's logits differ from "
        f"{onnx['reference']}'s by at most {onnx['max_abs_logit_diff']:.2g}. Greedy generation with "
        f"onnxruntime gives {'the same' if onnx['greedy_identical'] else 'DIFFERENT'} tokens as the "
        "framework that trained it.",
        "Sampled with onnxruntime (same prompt and settings as above):",
        _verse(onnx["sample"]),
        "Greedy:",
        _verse(onnx["greedy"]),
    ]


def report_markdown(entries: list[Entry], payload: dict[str, Any]) -> str:
    parts = [
        "# wordrnn: NumPy, PyTorch and JAX/Flax side by side, with a Kneser-Ney baseline",
        f"Written by `{payload['command']}` on {payload['date']} in {payload['wall_seconds']:.0f} s.",
        "## Results",
        results_table(entries),
        results_notes(entries, payload),
        "![training and validation loss per epoch](loss_curves.png)",
        *recipe_section(payload),
        *setup_section(payload),
        *samples_section(entries, payload),
        *onnx_section(payload),
    ]
    return "\n\n".join(parts) + "\n"


def write_report(out: Path, entries: list[Entry], config: Config, extras: dict[str, Any], dataset: dict[str, Any],
                 machine: dict[str, Any], command: str, prompt: str, wall_seconds: float) -> None:
    """Everything into ``out``: results.json, results.csv, loss_curves.png, form.png, REPORT.md."""
    payload = {
        "config": config.to_dict(),
        "machine": machine,
        "dataset": dataset,
        "command": command,
        "prompt": prompt,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": wall_seconds,
        **extras,
        "samples": {e.row["name"]: e.sample for e in entries},
    }
    write_results(out, entries, payload)
    plot_loss_curves(out, entries)
    plot_form(out, entries)
    atomic_write_text(out / "REPORT.md", report_markdown(entries, payload))
