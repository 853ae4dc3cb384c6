// The page: loads model.onnx (or ?model=NAME, or a file the user opens) with onnxruntime-web and writes verse
// by docs/GENERATION.md, word by word. Every failure is a message on the page.

import * as ort from "./ort.wasm.bundle.min.mjs";
import { WordrnnError, WordrnnModel, generateText, samplerSettings, tokenize } from "./wordrnn.mjs";

// One wasm thread: no SharedArrayBuffer, so a plain static host needs no cross-origin isolation headers.
ort.env.wasm.numThreads = 1;

const $ = (id) => document.getElementById(id);
let model = null;

function say(text) {
  $("message").textContent = text;
}

/** A failure as one readable line: ours as they are, anything else with its kind. */
function describe(err) {
  return err instanceof WordrnnError ? err.message : `unexpected error: ${err?.message ?? err}`;
}

function cacheText(cache) {
  return `the last ${cache.size} positions, theta ${cache.theta}, lambda ${cache.lambda}`;
}

function showCard(card, name) {
  const ppl = card.valPpl === null ? "not recorded" : card.valPpl.toFixed(2);
  const rows = [["file", name], ["cell", card.cell], ["input model", card.model], ["vocabulary", `${card.vocabSize} tokens`],
    ["context", card.context === "poem" ? "the whole poem, its state carried" : `a window of ${card.seqLen} tokens`],
    ...((card.config.layers ?? 1) > 1 ? [["layers", `${card.config.layers} stacked, ${card.config.hidden_size} units each`]]
      : []),
    ...((card.config.ensemble ?? 1) > 1 ? [["ensemble", `${card.config.ensemble} models, their probabilities averaged`]]
      : []),
    ...(card.cache ? [["neural cache", `scored with ${cacheText(card.cache.scoring)}; writes with ` +
      (card.cache.writing ? cacheText(card.cache.writing) : "none")]] : []),
    ["trained with", card.framework], ["validation perplexity", ppl]];
  $("card").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = String(v);
    return [dt, dd];
  }));
}

async function open(bytes, name) {
  model = null;
  $("write").disabled = true;
  $("card").replaceChildren();
  document.body.dataset.state = "loading";
  $("status").textContent = `Loading ${name}…`;
  try {
    model = await WordrnnModel.load(ort, bytes, name, { executionProviders: ["wasm"] });
    showCard(model.card, name);
    say("");
    $("status").textContent = `Ready: ${name}.`;
    $("write").disabled = false;
  } catch (err) {
    say(describe(err));
    $("status").textContent = "No model loaded.";
  }
  document.body.dataset.state = "ready";
}

async function openDefault() {
  const name = new URLSearchParams(location.search).get("model") ?? "model.onnx";
  try {
    const response = await fetch(name);
    if (!response.ok) throw new WordrnnError(`${name} could not be read (HTTP ${response.status})`);
    await open(await response.arrayBuffer(), name);
  } catch (err) {
    say(describe(err));
    $("status").textContent = "No model loaded.";
    document.body.dataset.state = "ready";
  }
}

function number(id, label, whole = false) {
  const text = $(id).value.trim();
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || (whole && !Number.isInteger(value))) {
    throw new WordrnnError(`${label} must be a ${whole ? "whole " : ""}number, got '${text}'`);
  }
  return value;
}

function readSettings() {
  const words = number("words", "Words", true);
  if (words <= 0) throw new WordrnnError(`Words must be a positive number, got ${words}`);
  const seedText = $("seed").value.trim();
  if (!/^\d+$/.test(seedText)) throw new WordrnnError(`Seed must be a whole number from 0 to 2**64 - 1, got '${seedText}'`);
  const settings = samplerSettings({
    strategy: $("strategy").value, temperature: number("temperature", "Temperature"),
    topK: number("top-k", "Top-k", true), topP: number("top-p", "Top-p"), seed: BigInt(seedText),
    allowUnk: $("allow-unk").checked, noRepeatNgram: number("no-repeat-ngram", "No repeated n-gram", true),
    repetitionPenalty: number("repetition-penalty", "Repetition penalty"),
  });
  return { words, settings };
}

/** Let the browser paint the words written so far (about 30 times a second), without slowing generation. */
function painter() {
  let last = performance.now();
  return async () => {
    const now = performance.now();
    if (now - last > 33) {
      last = now;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  };
}

async function write(event) {
  event.preventDefault();
  if (!model) return;
  say("");
  const output = $("output");
  output.replaceChildren();
  delete output.dataset.ids;
  document.body.dataset.state = "writing";
  $("write").disabled = true;
  try {
    const { words, settings } = readSettings();
    if (!tokenize($("prompt").value, model.card.tokenizer).length) {
      throw new WordrnnError("the prompt is empty; write at least one word in the Prompt box");
    }
    const paint = painter();
    const start = performance.now();
    const { ids } = await generateText(model, $("prompt").value, words, settings, async (piece) => {
      output.append(piece);
      await paint();
    });
    const seconds = (performance.now() - start) / 1000;
    output.dataset.ids = JSON.stringify(ids);
    $("status").dataset.tokensPerSecond = String(ids.length / seconds);
    $("status").textContent = `${ids.length} tokens in ${seconds.toFixed(2)} s ` +
      `(${Math.round(ids.length / seconds)} tokens/s, onnxruntime-web, wasm, one thread).`;
  } catch (err) {
    say(describe(err));
  }
  $("write").disabled = false;
  document.body.dataset.state = "done";
}

$("form").addEventListener("submit", write);
$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  if (file) await open(await file.arrayBuffer(), file.name);
});
openDefault();
