"""``python -m wordrnn.bench.web_speed``: generation speed of one exported file in Python, Node.js and the browser.

Tokens per second, side by side in one run on one machine, of the three
clients of docs/GENERATION.md: Python (``wordrnn.run.generation`` with
onnxruntime), Node.js (``web/wordrnn.mjs`` with onnxruntime-node) and headless
Chromium (the page of ``python -m export.web``: onnxruntime-web, wasm, one
thread, words written into the page as they come). Each writes the same
number of tokens after a warm-up, greedy and sampled, with one onnxruntime
thread. Without ``--model`` it measures a benchmark-size model (V 1823, H 128,
E 100, window 5, seeded random weights: speed does not depend on training).
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


def benchmark_model(folder: Path) -> Path:
    """An export of the benchmark configuration's size, with seeded random weights and a made-up vocabulary."""
    from data.vocab import Vocab
    from export import onnx as export_onnx
    from wordrnn.core.config import Config
    from wordrnn.core.params import init_params
    from wordrnn.run.folder import WEIGHTS, atomic_write_text, save_params, write_config

    words = ["<unk>", "\n", "the", *(f"w{i}" for i in range(BENCHMARK_V - 3))]
    config = Config(model="embedding", vocab_size=len(words), hidden_size=128, embed_dim=100, seq_len=5, seed=0)
    run = folder / "run"
    write_config(run, config, "numpy")
    atomic_write_text(run / "vocab.json", Vocab(words).to_json())
    save_params(run / WEIGHTS, init_params(config))
    out = folder / "benchmark.onnx"
    if export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy"]) != 0:
        raise UsageError("the benchmark model did not export")
    return out


def python_speed(model: Path, tokens: int) -> dict[str, float]:
    from export.metadata import ModelCard, from_props
    from export.session import OnnxLM, open_session
    from wordrnn.core.sampling import SamplerSettings
    from wordrnn.run.generation import generate_text

    session = open_session(model, str(model), threads=1)
    card: ModelCard = from_props(session.get_modelmeta().custom_metadata_map, str(model))
    lm = OnnxLM(session, card, str(model))
    def write(strategy: str, n: int) -> float:
        start = time.perf_counter()
        generate_text(lm.logits, card.vocab, card.config.seq_len, "the", n, SamplerSettings(strategy, seed=0))
        return n / (time.perf_counter() - start)

    return measure(write, tokens)


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
    parser.add_argument("--model", metavar="FILE", help="an exported .onnx (default: a benchmark-size model)")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per measurement (default: %(default)s)")
    return parser.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tokens <= 0:
        raise UsageError(f"--tokens must be a positive number, got {args.tokens}")
    if shutil.which("node") is None or not (ROOT / "node_modules" / "onnxruntime-node").is_dir():
        raise UsageError("needs Node.js and the node modules: run `make web` (or `npm ci`)")
    if not CHROMIUM.is_file():
        raise UsageError(f"needs Chromium at {CHROMIUM}: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else benchmark_model(Path(tmp))
        rows = {"Python (onnxruntime)": python_speed(model, args.tokens),
                "Node.js (onnxruntime-node)": node_speed(model, args.tokens),
                "Chromium (onnxruntime-web, wasm)": browser_speed(model, args.tokens, Path(tmp))}
    base = rows["Python (onnxruntime)"]
    print(f"tokens per second (median of {REPEATS}), {args.tokens} tokens after a warm-up, one onnxruntime "
          "thread each:")
    print(f"{'client':34} {'greedy':>9} {'sampled':>9} {'vs Python (sampled)':>20}")
    for name, speed in rows.items():
        print(f"{name:34} {speed['greedy']:9.0f} {speed['sample']:9.0f} {speed['sample'] / base['sample']:19.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
