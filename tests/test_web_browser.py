"""The page in a real browser: headless Chromium opens the page python -m export.web serves, types a prompt,
presses Write, and the poem that appears is Python's for the same file, settings and seed (docs/GENERATION.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT
from test_export_poem import lying_files
from test_web import CELLS_AND_CONTEXTS, MARGIN, STACKED, first_difference_margin, make_model, write_cases

from export import onnx as export_onnx
from export import web as export_web

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's chromium package; Playwright never downloads a browser
playwright = pytest.importorskip("playwright.sync_api",
                                 reason="needs Playwright's Python package (pip install -e '.[dev]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(not (export_web.ORT_DIST / export_web.ORT_FILES[0]).is_file(),
                       reason="needs onnxruntime-web in node_modules (make web, or npm ci)"),
]


@contextmanager
def served(model: Path, out: Path) -> Iterator[str]:
    """The page of ``model`` built into ``out`` and served by ``python -m export.web --serve``: its address; the
    server stops on the way out."""
    server = subprocess.Popen([sys.executable, "-m", "export.web", "--model", str(model), "--out", str(out),
                               "--serve", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = next((m.group(0) for line in server.stdout
                    if (m := re.search(r"http://127\.0\.0\.1:\d+/", line))), None)
        assert url, "export.web --serve printed no address"
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def page_of(model: Path, out: Path) -> Iterator:
    """``model``'s page open in headless Chromium, ready to write."""
    with served(model, out) as url, playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield open_page(chromium, url)
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The served page, with an export of each cell and context beside model.onnx, the cases Python wrote for
    each, and files whose graph does not match their metadata."""
    folder = tmp_path_factory.mktemp("site")
    models = {(cell, context): make_model(folder, cell, context=context) for cell, context in CELLS_AND_CONTEXTS}
    models.update({(cell, f"{context}-{layers}layers"): make_model(folder, cell, context=context, layers=layers)
                   for cell, context, layers in STACKED})
    cases = {key: write_cases(path, folder)[1] for key, path in models.items()}
    out = folder / "site"
    with served(models["rnn", "window"], out) as url:
        for (cell, context), path in models.items():
            shutil.copyfile(path, out / f"{cell}-{context}.onnx")
        for path, _ in lying_files(folder).values():
            shutil.copyfile(path, out / path.name)
        yield url, models, cases, folder


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(url)
    page.wait_for_function("document.body.dataset.state === 'ready'")
    return page


def write(page, case: dict) -> tuple[str, list[int] | None]:
    page.fill("#prompt", case["prompt"])
    page.fill("#words", str(case["words"]))
    page.select_option("#strategy", case["strategy"])
    page.fill("#temperature", str(case["temperature"]))
    page.fill("#top-k", str(case["top_k"]))
    page.fill("#top-p", str(case["top_p"]))
    page.fill("#seed", str(case["seed"]))
    page.set_checked("#allow-unk", case["allow_unk"])
    page.fill("#no-repeat-ngram", str(case["no_repeat_ngram"]))
    page.fill("#repetition-penalty", str(case["repetition_penalty"]))
    page.click("#write")
    page.wait_for_function("document.body.dataset.state === 'done'")
    ids = page.get_attribute("#output", "data-ids")
    return page.text_content("#output"), (None if ids is None else [int(i) for i in ids.strip("[]").split(",")])


def assert_page_writes(page, model: Path, cases: list[dict]) -> None:
    """The page writes every case's expected text; where its tokens differ, only at a sampled draw within
    ``MARGIN`` of a cumulative-probability boundary (wasm's float32 logits may differ in the last bits)."""
    for case in cases:
        text, ids = write(page, case)
        assert page.text_content("#message") == "", case
        if ids != case["expected"]["ids"]:
            step, margin = first_difference_margin(model, case, ids)
            assert case["strategy"] == "sample" and margin <= MARGIN, (case, step, margin)
            continue
        assert text == case["expected"]["text"], case


@pytest.mark.parametrize(("cell", "context"), [*CELLS_AND_CONTEXTS, *((c, f"{x}-{n}layers") for c, x, n in STACKED)])
def test_the_page_writes_pythons_poem_for_every_case(site, browser, cell, context):
    url, models, cases, _ = site
    page = open_page(browser, f"{url}?model={cell}-{context}.onnx")
    assert page.text_content("#message") == ""
    card = page.text_content("#card")
    assert f"cell{cell}" in card and "input modelembedding" in card and "vocabulary21 tokens" in card
    assert "trained withnumpy" in card and "validation perplexity20.09" in card
    poem = context.startswith("poem")
    layers = context.partition("-")[2].removesuffix("layers")
    assert (f"layers{layers} stacked, 16 units each" in card) == bool(layers)
    assert ("contextthe whole poem, its state carried" if poem else "contexta window of 4 tokens") in card
    assert_page_writes(page, models[cell, context], cases[cell, context])
    page.close()


def test_bad_input_shows_a_message_on_the_page_and_a_screenshot_is_taken(site, browser, tmp_path):
    url, _, cases, folder = site
    page = open_page(browser, url)
    assert page.is_enabled("#write")
    sampled = next(c for c in cases["rnn", "window"] if c["strategy"] == "sample" and not c["allow_unk"])
    text, _ = write(page, sampled)
    assert text == sampled["expected"]["text"]
    assert "tokens/s" in page.text_content("#status")
    shot = tmp_path / "web_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("WORDRNN_SCREENSHOT"):  # how docs/web_page.png is made
        shutil.copyfile(shot, os.environ["WORDRNN_SCREENSHOT"])

    # Words appear as they are written: part of the poem is on the page while the page is still writing.
    page.fill("#words", "30000")  # seconds of writing, so the check below catches it under way on a fast machine
    page.click("#write")
    page.wait_for_function("document.body.dataset.state === 'writing' && "
                           "document.getElementById('output').textContent.split(' ').length > 8")
    partial = page.text_content("#output")
    page.wait_for_function("document.body.dataset.state === 'done'")
    assert len(page.text_content("#output")) > len(partial) and page.text_content("#output").startswith(partial)

    for prompt, message in [("   ", "the prompt is empty"), ("zebra quartz", "is unknown to this model")]:
        write(page, {**sampled, "prompt": prompt})
        assert message in page.text_content("#message")
    write(page, {**sampled, "top_p": 0})
    assert "--top-p must lie in (0, 1]" in page.text_content("#message")

    foreign = folder / "poem.onnx"
    foreign.write_text("the sea is calm tonight\n")
    page.set_input_files("#file", str(foreign))
    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert "poem.onnx is not an ONNX model" in page.text_content("#message")
    assert not page.is_enabled("#write") and page.text_content("#card") == ""
    page.close()

    missing = open_page(browser, f"{url}?model=nothing.onnx")
    assert "nothing.onnx could not be read (HTTP 404)" in missing.text_content("#message")
    missing.close()


def test_the_page_refuses_a_file_whose_graph_does_not_match_its_metadata(site, browser, tmp_path):
    url = site[0]
    for path, fragment in lying_files(tmp_path).values():
        page = open_page(browser, f"{url}?model={path.name}")
        message = page.text_content("#message")
        assert message.startswith(f"{path.name}: ") and fragment in message and "export it again" in message, message
        assert not page.is_enabled("#write") and page.text_content("#card") == ""
        page.close()


def test_a_write_the_page_refuses_replaces_the_earlier_message(site, browser):
    """A value the form's own limits would block (top-p 1.5): the page says what is wrong, in the command line's
    words, instead of leaving the previous message under another prompt."""
    url, _, cases, _ = site
    page = open_page(browser, url)
    sampled = next(c for c in cases["rnn", "window"] if c["strategy"] == "sample" and not c["allow_unk"])
    write(page, {**sampled, "prompt": "   "})
    assert "the prompt is empty" in page.text_content("#message")
    write(page, {**sampled, "top_p": 1.5})
    message = page.text_content("#message")
    assert message == "--top-p must lie in (0, 1], got 1.5", message
    write(page, {**sampled, "temperature": 0.001})
    assert "--temperature must be a finite number of at least 0.01" in page.text_content("#message")
    text, _ = write(page, sampled)
    assert page.text_content("#message") == "" and text == sampled["expected"]["text"]
    page.close()


def test_the_model_card_says_an_ensemble_and_its_cache(browser, tmp_path, tiny_corpus):
    from scratch import train as scratch_train

    run = tmp_path / "ensemble"
    assert scratch_train.main(["--data", str(tiny_corpus), "--seq-len", "3", "--min-freq", "1", "--hidden-size", "8",
                               "--embed-dim", "4", "--batch-size", "4", "--bptt", "5", "--context", "poem", "--cell",
                               "lstm", "--ensemble", "3", "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    model = tmp_path / "ensemble.onnx"
    assert export_onnx.main(["--run", str(run), "--out", str(model), "--cache-size", "12", "--cache-theta", "0.5",
                             "--cache-lambda", "0.4"]) == 0
    with served(model, tmp_path / "site") as url:
        page = open_page(browser, url)
        card = page.text_content("#card")
        assert "ensemble3 models, their probabilities averaged" in card, card
        assert "neural cachethe last 12 positions, theta 0.5, lambda 0.4" in card, card
        page.close()
