"""``python -m wordrnn.bench.web_speed``: generation speed of one exported file in Python, Node.js and the browser.

Tokens per second, side by side in one run on one machine, of the three
clients of docs/GENERATION.md: Python (``wordrnn.run.generation`` with
onnxruntime), Node.js (``web/wordrnn.mjs`` with onnxruntime-node) and headless
Chromium (the page of ``python -m export.web``: onnxruntime-web, wasm, one
thread, words written into the page as they come). Each writes the same
number of tokens after a warm-up, greedy and sampled, with one onnxruntime
thread. Without ``--model`` it measures two benchmark-size models of one cell
(V 1823, H 128, E 100, seeded random weights: speed does not depend on
training): a window model (window 5) and a poem model, which carries its state
and runs one cell step a token; and, in Python and Node.js, the time per token
at the 20th and at the last (by default the 2,000th) token of a text, to show
that a token costs the same however long the text.
Needs Node.js, the node modules (``make web``), Playwright and Debian's chromium.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wordrnn.core.errors import CommandParser, UsageError, cli

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/lib/chromium/chromium")
BENCHMARK_V = 1823
WARMUP = 500  # tokens first written and not timed: onnxruntime-web's wasm is compiled in tiers as it runs
REPEATS = 3
STRATEGIES = ("greedy", "sample")
CONTEXTS = ("window", "poem")
EARLY = 20  # the token whose time is compared with the last's
SPAN = 10  # tokens each side of a position, whose median time per token is that position's


def benchmark_model(folder: Path, context: str = "window", cell: str = "rnn") -> Path:
    """An export of the benchmark configuration's size, with seeded random weights and a made-up vocabulary."""
    from data.vocab import Vocab
    from export import onnx as export_onnx
    from wordrnn.core.config import Config
    from wordrnn.core.params import init_params
    from wordrnn.run.folder import WEIGHTS, atomic_write_text, save_params, write_config

    words = ["<unk>", "\n", "the", *(f"w{i}" for i in range(BENCHMARK_V - 3))]
    config = Config(model="embedding", cell=cell, context=context, vocab_size=len(words), hidden_size=128,
                    embed_dim=100, seq_len=5, seed=0)
    run = folder / f"run-{context}"
    write_config(run, config, "numpy")
    atomic_write_text(run / "vocab.json", Vocab(words).to_json())
    save_params(run / WEIGHTS, init_params(config))
    out = folder / f"benchmark-{context}.onnx"
    if export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy"]) != 0:
        raise UsageError("the benchmark model did not export")
    return out


def python_speed(model: Path, tokens: int) -> dict[str, float]:
    from export.metadata import ModelCard, from_props
    from export.session import OnnxLM, open_session
    from wordrnn.core.sampling import SamplerSettings, iter_generate
    from wordrnn.run.generation import generate_text, prompt_to_ids

    session = open_session(model, str(model), threads=1)
    card: ModelCard = from_props(session.get_modelmeta().custom_metadata_map, str(model))
    lm = OnnxLM(session, card, str(model))

    def write(strategy: str, n: int) -> float:
        start = time.perf_counter()
        generate_text(lm.source, card.vocab, card.config.seq_len, "the", n, SamplerSettings(strategy, seed=0))
        return n / (time.perf_counter() - start)

    def step_times(n: int) -> list[float]:
        times, last = [], time.perf_counter()
        prompt = prompt_to_ids("the", card.vocab)
        for _ in iter_generate(lm.source, prompt, n, card.config.seq_len, SamplerSettings("greedy")):
            now = time.perf_counter()
            times.append(now - last)
            last = now
        return times

    return {**measure(write, tokens), **early_and_late([step_times(tokens) for _ in range(REPEATS)])}


def early_and_late(runs: list[list[float]]) -> dict[str, float]:
    """Microseconds per token around the EARLY-th token and around the last, medians over the runs' tokens."""
    def around(runs: list[list[float]], position: int) -> float:
        return 1e6 * statistics.median(t for times in runs for t in times[position - 1 - SPAN:position - 1 + SPAN])

    n = len(runs[0])
    return {"early_us": around(runs, EARLY), "late_us": around(runs, n - SPAN)}


def measure(write, tokens: int) -> dict[str, float]:
    """Warm up each strategy, then the median of REPEATS interleaved measurements: tokens per second."""
    for strategy in STRATEGIES:
        write(strategy, WARMUP)
    runs = {strategy: [] for strategy in STRATEGIES}
    for _ in range(REPEATS):
        for strategy in STRATEGIES:
            runs[strategy].append(write(strategy, tokens))
    return {strategy: statistics.median(values) for strategy, values in runs.items()}


def node_speed(model: Path, tokens: int) -> dict[str, float]:
    """web/bench.mjs: tokens per second and, as here, the microseconds per token early and late."""
    result = subprocess.run(["node", "web/bench.mjs", "--model", str(model), "--tokens", str(tokens)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def browser_speed(model: Path, tokens: int, folder: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    server = subprocess.Popen([sys.executable, "-m", "export.web", "--model", str(model), "--out",
                               str(folder / "site"), "--serve", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        url = next(m.group(0) for line in server.stdout if (m := re.search(r"http://127\.0\.0\.1:\d+/", line)))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.body.dataset.state === 'ready'")

            def write(strategy: str, n: int) -> float:  # as a person would: the form, then Write
                page.select_option("#strategy", strategy)
                page.fill("#prompt", "the")
                page.fill("#words", str(n))
                page.click("#write")
                page.wait_for_function("document.body.dataset.state === 'done'", timeout=600_000)
                return float(page.get_attribute("#status", "data-tokens-per-second"))

            speeds = measure(write, tokens)
            browser.close()
        return speeds
    finally:
        server.terminate()
        server.wait(timeout=10)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandParser(prog="python -m wordrnn.bench.web_speed", description=__doc__.split("\n\n")[1])
    parser.add_argument("--model", metavar="FILE", help="an exported .onnx (default: benchmark-size models of "
                        "both contexts)")
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn",
                        help="the benchmark models' cell (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per measurement (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true", help="Python and Node.js only")
    return parser.parse_args(argv)


def speeds(model: Path, tokens: int, folder: Path, browser: bool) -> dict[str, dict[str, float]]:
    rows = {"Python (onnxruntime)": python_speed(model, tokens),
            "Node.js (onnxruntime-node)": node_speed(model, tokens)}
    if browser:
        rows["Chromium (onnxruntime-web, wasm)"] = browser_speed(model, tokens, folder)
    return rows


def print_table(results: dict[str, dict[str, dict[str, float]]], tokens: int) -> None:
    """One row per client and model: tokens/s, the poem model against the window model, early and late tokens."""
    print(f"tokens per second (median of {REPEATS}), {tokens} tokens after a warm-up, one onnxruntime thread each; "
          f"us per token: medians of the {2 * SPAN} tokens around the {EARLY}th and the {tokens - SPAN}th (greedy):")
    print(f"{'client':34} {'model':7} {'greedy':>8} {'sampled':>8} {'vs window':>10} "
          f"{'us@' + str(EARLY):>8} {'us@' + str(tokens):>8} {'late/early':>10}")
    base = results.get("window", {})
    for context, rows in results.items():
        for name, speed in rows.items():
            ratio = f"{speed['sample'] / base[name]['sample']:9.2f}x" if name in base else f"{'':>10}"
            times = (f"{speed['early_us']:8.1f} {speed['late_us']:8.1f} {speed['late_us'] / speed['early_us']:9.2f}x"
                     if "early_us" in speed else "")
            print(f"{name:34} {context:7} {speed['greedy']:8.0f} {speed['sample']:8.0f} {ratio} {times}")


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tokens <= 2 * EARLY + SPAN:
        raise UsageError(f"--tokens must be more than {2 * EARLY + SPAN}, got {args.tokens}")
    if shutil.which("node") is None or not (ROOT / "node_modules" / "onnxruntime-node").is_dir():
        raise UsageError("needs Node.js and the node modules: run `make web` (or `npm ci`)")
    if not args.no_browser and not CHROMIUM.is_file():
        raise UsageError(f"needs Chromium at {CHROMIUM}: apt-get install chromium (or pass --no-browser)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = ({"given": Path(args.model)} if args.model else
                  {context: benchmark_model(folder, context, args.cell) for context in CONTEXTS})
        results = {context: speeds(model, args.tokens, folder / context, not args.no_browser)
                   for context, model in models.items()}
    print_table(results, args.tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
