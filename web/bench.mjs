#!/usr/bin/env node
// node web/bench.mjs --model FILE [--tokens N]: tokens per second of the JavaScript client in Node.js
// (onnxruntime-node, one thread), greedy and sampled: a warm-up, then the median of three interleaved runs,
// as python -m wordrnn.bench.web_speed measures the other clients.

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import * as ort from "onnxruntime-node";

import { WordrnnModel, generateText, samplerSettings } from "./wordrnn.mjs";

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

for (const strategy of strategies) await write(strategy, 500);
const runs = { greedy: [], sample: [] };
for (let r = 0; r < 3; r++) for (const strategy of strategies) runs[strategy].push(await write(strategy, tokens));
const median = (xs) => [...xs].sort((a, b) => a - b)[1];
process.stdout.write(JSON.stringify({ greedy: median(runs.greedy), sample: median(runs.sample) }) + "\n");
