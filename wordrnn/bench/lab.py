"""The work behind ``python -m wordrnn.bench.compare``: train, evaluate, sample, export.

Every RNN is trained by the one loop (``wordrnn.run.loop.train``) on one ``Dataset``
(same split, vocabulary and windows), from ``wordrnn.core.params.init_params`` with the
same seed (same initial weights per model) and with ``data.batches``'s seeded
batches (same batches), so the runs differ only in the framework. The
Kneser-Ney baseline is fitted to the same training poems and scored on exactly
the same validation targets.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from data.dataset import Dataset
from data.tokenizer import tokenize
from data.vocab import Vocab
from wordrnn.bench.kneser_ney import KneserNey, select_order
from wordrnn.bench.novelty import TrainingText
from wordrnn.bench.written import TrainingPoems, Written, write_texts
from wordrnn.core.backend import Backend
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.paths import REPORT_RUNS
from wordrnn.core.sampling import SamplerSettings, generate
from wordrnn.frameworks import IMPLS, LABELS, make_backend
from wordrnn.run.folder import atomic_write_bytes, load_run
from wordrnn.run.generation import generate_text, prompt_to_ids
from wordrnn.run.loop import count_params, generation_source, train

SAMPLE_TOKENS = 40
SAMPLE_SETTINGS = SamplerSettings(temperature=0.8, top_p=0.9, seed=0)
GREEDY = SamplerSettings("greedy")


@dataclass
class Entry:
    """One row of the comparison, with what the report draws and prints beside the table."""

    row: dict[str, Any]
    curves: list[dict[str, float]] = field(default_factory=list)  # per epoch: epoch, train_loss, val_loss
    sample: str = ""
    run_dir: Path | None = None
    config: Config | None = None
    written: Written | None = None  # the long text its form and repetition are measured on


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def train_rnn(impl: str, config: Config, dataset: Dataset, run_dir: Path, prompt: str, quiet: bool,
              variant: str = "benchmark") -> Entry:
    """Train one implementation of one model through ``wordrnn.run.loop`` and describe the run."""
    backend = make_backend(impl)
    result = train(config, backend, run_dir, overwrite=True, quiet=quiet, dataset=dataset, explain_interrupt=False)
    if result.exit_code:  # the loop caught Ctrl-C and kept the run folder; stop the whole comparison
        raise KeyboardInterrupt
    best = next(r for r in result.metrics if r["epoch"] == result.best_epoch)
    seconds = [r["seconds"] for r in result.metrics]
    run = load_run(run_dir)
    state = backend.init(run.params, config)
    name = f"{LABELS[impl]} {config.model}" + ("" if variant == "benchmark" else f" ({variant})")
    row = {
        "name": name,
        "impl": impl,
        "model": config.model,
        "variant": variant,
        "params": count_params(run.params),
        "epochs": len(result.metrics),
        "train_seconds": result.train_seconds,
        # the median epoch after the first, which carries the warm-up (JAX compiles then)
        "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
        "first_epoch_seconds": seconds[0],
        "final_train_loss": result.metrics[-1]["train_loss"],
        "best_val_loss": best["val_loss"],
        "best_val_ppl": best["val_ppl"],
        "best_val_ppl_known": best["val_ppl_known"],
        "best_epoch": result.best_epoch,
        "val_top1": best["val_top1"],
        "val_top5": best["val_top5"],
        "time_ratio_vs_torch": None,
        "run_dir": str(run_dir),
    }
    curves = [{k: r[k] for k in ("epoch", "train_loss", "val_loss")} for r in result.metrics]
    source = generation_source(backend, state, config)
    sample = sample_text(source, dataset.vocab, config.seq_len, prompt)
    written = write_texts(source, dataset.vocab, config.seq_len, SAMPLE_SETTINGS)
    return Entry(row, curves, sample, run_dir, config, written)


def kneser_ney_entry(dataset: Dataset, config: Config, prompt: str) -> tuple[Entry, dict[int, float]]:
    """The n-gram baseline at the order that scores best on validation (orders 1 to 4)."""
    V = len(dataset.vocab)
    order, per_order = select_order(dataset.train_ids, dataset.val_x, dataset.val_y, V)
    started = time.perf_counter()
    model = KneserNey(order).fit(dataset.train_ids, V)
    fit_seconds = time.perf_counter() - started
    metrics = model.evaluate(dataset.val_x, dataset.val_y)
    row = {
        "name": f"Kneser-Ney {order}-gram",
        "impl": "kneser-ney",
        "model": f"{order}-gram",
        "variant": "baseline",
        "params": model.size,
        "epochs": None,
        "train_seconds": fit_seconds,
        "seconds_per_epoch": None,
        "first_epoch_seconds": None,
        "final_train_loss": -float(model.log_prob(dataset.train_x, dataset.train_y).mean()),
        "best_val_loss": metrics["val_loss"],
        "best_val_ppl": metrics["val_ppl"],
        "best_val_ppl_known": metrics["val_ppl_known"],
        "best_epoch": None,
        "val_top1": metrics["val_top1"],
        "val_top5": metrics["val_top5"],
        "time_ratio_vs_torch": None,
        "run_dir": None,
        "order": order,
    }
    sample = sample_text(model.log_distributions, dataset.vocab, config.seq_len, prompt)
    written = write_texts(model.log_distributions, dataset.vocab, config.seq_len, SAMPLE_SETTINGS)
    return Entry(row, sample=sample, written=written), per_order


def sample_text(logits_fn, vocab: Vocab, seq_len: int, prompt: str) -> str:
    return generate_text(logits_fn, vocab, seq_len, prompt, SAMPLE_TOKENS, SAMPLE_SETTINGS)


def fill_novelty(entries: list[Entry], dataset: Dataset, prompt: str) -> None:
    """How much of each sample is copied from the training poems (``wordrnn.bench.novelty``), in its row.

    The training poems are read through the vocabulary, as the models see them; the prompt is not counted.
    """
    training = TrainingText([dataset.vocab.decode(ids) for ids in dataset.train_ids])
    skip = len(tokenize(prompt, dataset.vocab.tokenizer))
    for e in entries:
        result = training.novelty(tokenize(e.sample, dataset.vocab.tokenizer)[skip:])
        e.row["sample_copied_4grams"] = result.copied_4grams
        e.row["sample_longest_copy"] = result.longest_copy
        e.row["sample_novelty"] = result.describe()


def fill_written(entries: list[Entry], dataset: Dataset) -> None:
    """Each row's form and repetition, measured on its long text (``wordrnn.bench.written``: 2,000 tokens from the
    prompt set) beside the training poems' (read through the vocabulary, as the models see them)."""
    poems = TrainingPoems([dataset.vocab.decode(ids) for ids in dataset.train_ids])
    for e in entries:
        if e.written is not None:
            e.row.update(poems.measure(e.written).row())


def fill_speed_ratios(entries: list[Entry]) -> None:
    """Seconds per epoch over PyTorch's on the same model (benchmark configuration only)."""
    torch_spe = {e.row["model"]: e.row["seconds_per_epoch"] for e in entries
                 if e.row["impl"] == "torch" and e.row["variant"] == "benchmark"}
    for e in entries:
        ref = torch_spe.get(e.row["model"])
        if e.row["impl"] in IMPLS and e.row["variant"] == "benchmark" and ref:
            e.row["time_ratio_vs_torch"] = e.row["seconds_per_epoch"] / ref


def export_best(entries: list[Entry], out: Path, prompt: str) -> dict[str, Any]:
    """Export the RNN with the lowest validation loss to ONNX; generate from it with onnxruntime.

    Also checks docs/DESIGN.md's promise that greedy generation gives identical tokens in
    every runtime: onnxruntime against the framework that trained the run.
    """
    from export.onnx import export_run, tolerance_text
    from export.session import load

    best = min((e for e in entries if e.run_dir is not None), key=lambda e: e.row["best_val_loss"])
    run = load_run(best.run_dir)
    exported = export_run(run)
    if not exported.verdict.passed:
        raise UsageError(f"the ONNX export of {best.row['name']} differs from {exported.reference} by "
                         f"{exported.worst:.3g} > {tolerance_text(exported.verdict)}")
    path = out / "model.onnx"
    atomic_write_bytes(path, exported.payload)
    lm = load(path)
    vocab, seq_len = run.vocab, run.config.seq_len
    prompt_ids = prompt_to_ids(prompt, vocab)
    backend: Backend = make_backend(best.row["impl"])
    state = backend.init(run.params, best.config)
    # a poem run is read with its state carried, in the framework and in onnxruntime alike
    source_greedy = generate(generation_source(backend, state, best.config), prompt_ids, SAMPLE_TOKENS, seq_len,
                             GREEDY)
    onnx_greedy = generate(lm.source, prompt_ids, SAMPLE_TOKENS, seq_len, GREEDY)
    return {
        "source": best.row["name"],
        "path": path.name,
        "bytes": len(exported.payload),
        "reference": exported.reference,
        "max_abs_logit_diff": exported.worst,
        "greedy_identical": source_greedy == onnx_greedy,
        "sample": sample_text(lm.source, vocab, seq_len, prompt),
        "greedy": generate_text(lm.source, vocab, seq_len, prompt, SAMPLE_TOKENS, GREEDY),
    }


def run_comparison(base: Config, dataset: Dataset, out: Path, impls: list[str], models: list[str],
                   recipe_runs: dict[str, dict[str, Any]], recipe_impl: str, prompt: str, quiet: bool,
                   export: bool) -> tuple[list[Entry], dict[str, Any]]:
    """Train everything, fit the baseline, export the best; return the entries and the extras for the report.

    ``recipe_runs``: variant name -> the settings of a recipe row (none: no recipe rows).
    """
    jobs = [(impl, replace(base, model=model), "benchmark") for model in models for impl in impls]
    jobs += [(recipe_impl, replace(base, **settings), variant) for variant, settings in recipe_runs.items()]
    entries: list[Entry] = []
    for i, (impl, config, variant) in enumerate(jobs, start=1):
        name = f"{impl}-{config.model}" + ("" if variant == "benchmark" else "-" + variant.replace(", ", "-")
                                                                                          .replace(" ", "-"))
        say(f"[{i}/{len(jobs) + 1}] {LABELS[impl]} {config.model} ({variant}): {config.epochs} epochs "
            f"-> {out / 'runs' / name}")
        entry = train_rnn(impl, replace(config), dataset, out / REPORT_RUNS / name, prompt, quiet, variant)
        r = entry.row
        say(f"      best val ppl {r['best_val_ppl']:.2f} (epoch {r['best_epoch']}), "
            f"{r['seconds_per_epoch']:.2f} s/epoch, {r['train_seconds']:.1f} s training")
        entries.append(entry)
    say(f"[{len(jobs) + 1}/{len(jobs) + 1}] Kneser-Ney baseline, orders 1-4")
    kn, per_order = kneser_ney_entry(dataset, base, prompt)
    say("      validation perplexity by order: "
        + ", ".join(f"{n}: {ppl:.2f}" for n, ppl in per_order.items()) + f" -> order {kn.row['order']}")
    entries.append(kn)
    fill_speed_ratios(entries)
    fill_novelty(entries, dataset, prompt)
    fill_written(entries, dataset)
    extras: dict[str, Any] = {"kneser_ney_orders": per_order, "recipe": recipe_runs.get("recipe"),
                              "recipes": recipe_runs, "recipe_impl": recipe_impl}
    if export and any(e.run_dir is not None for e in entries):
        say("exporting the best run to ONNX")
        extras["onnx"] = export_best(entries, out, prompt)
        say(f"      {extras['onnx']['source']} -> {out / extras['onnx']['path']}, "
            f"max |logit diff| {extras['onnx']['max_abs_logit_diff']:.2g}, greedy tokens identical: "
            f"{extras['onnx']['greedy_identical']}")
    return entries, extras


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    return {
        "vocab_size": len(dataset.vocab),
        "train_poems": len(dataset.train_ids),
        "val_poems": len(dataset.val_ids),
        "train_tokens": int(sum(len(p) for p in dataset.train_ids)),
        "train_windows": len(dataset.train_x),
        "val_windows": len(dataset.val_x),
        "val_oov_rate": dataset.val_oov_rate,
        "source": str(dataset.source),
    }
