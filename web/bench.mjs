#!/usr/bin/env node
// node web/bench.mjs --model FILE [--tokens N]: tokens per second of the JavaScript client in Node.js
// (onnxruntime-node, one thread), greedy and sampled: a warm-up, then the median of three interleaved runs,
// as python -m wordrnn.bench.web_speed measures the other clients; and the microseconds per token around the
// 20th and around the last token of a greedy text (medians of the 20 tokens around each, over three texts).

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import * as ort from "onnxruntime-node";

import { WordrnnModel, generateIds, generateText, promptToIds, samplerSettings } from "./wordrnn.mjs";

const EARLY = 20;
const SPAN = 10;
const { values } = parseArgs({ options: { model: { type: "string" }, tokens: { type: "string", default: "2000" },
  prompt: { type: "string", default: "the" } } });
const tokens = Number(values.tokens);
const model = await WordrnnModel.load(ort, await readFile(values.model), values.model,
  { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
const strategies = ["greedy", "sample"];

async function write(strategy, n) {
  const start = performance.now();
  await generateText(model, values.prompt, n, samplerSettings({ strategy, seed: 0n }));
  return n / ((performance.now() - start) / 1000);
}

/** Milliseconds between one token and the next, for each of n greedy tokens. */
async function stepTimes(n) {
  const times = [];
  let last = performance.now();
  const greedy = samplerSettings({ strategy: "greedy" });
  for await (const _ of generateIds(model, promptToIds(values.prompt, model.card), n, greedy)) {
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  return times;
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const around = (runs, position) => 1000 * median(runs.flatMap((t) => t.slice(position - 1 - SPAN, position - 1 + SPAN)));

for (const strategy of strategies) await write(strategy, 500);
const runs = { greedy: [], sample: [] };
for (let r = 0; r < 3; r++) for (const strategy of strategies) runs[strategy].push(await write(strategy, tokens));
const steps = [];
for (let r = 0; r < 3; r++) steps.push(await stepTimes(tokens));
process.stdout.write(JSON.stringify({ greedy: median(runs.greedy), sample: median(runs.sample),
  early_us: around(steps, EARLY), late_us: around(steps, tokens - SPAN) }) + "\n");
