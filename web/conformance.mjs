#!/usr/bin/env node
// Conformance runner for docs/GENERATION.md, used by the tests (and by anyone checking a client):
//   node web/conformance.mjs cases CASES.json   -> JSON [{ids, text} or {error}] for each case, in order
//   node web/conformance.mjs metadata FILE...   -> JSON {FILE: {props} or {error}}: this module's metadata reader
// A cases file is {"model": PATH, "cases": [{prompt, words, strategy, temperature, top_k, top_p, seed,
// allow_unk, ...}]}, as the Python tests write it.

import { readFile } from "node:fs/promises";

import * as ort from "onnxruntime-node";

import { WordrnnError, WordrnnModel, generateText, readMetadata, samplerSettings } from "./wordrnn.mjs";

async function runCases(path) {
  const spec = JSON.parse(await readFile(path, "utf8"));
  const model = await WordrnnModel.load(ort, await readFile(spec.model), spec.model, { logSeverityLevel: 3 });
  const results = [];
  for (const c of spec.cases) {
    try {
      const settings = samplerSettings({ strategy: c.strategy, temperature: c.temperature, topK: c.top_k,
        topP: c.top_p, seed: BigInt(c.seed), allowUnk: c.allow_unk });
      results.push(await generateText(model, c.prompt, c.words, settings));
    } catch (err) {
      if (!(err instanceof WordrnnError)) throw err;
      results.push({ error: err.message });
    }
  }
  return results;
}

async function readAll(paths) {
  const out = {};
  for (const path of paths) {
    try {
      out[path] = { props: Object.fromEntries(readMetadata(await readFile(path), path)) };
    } catch (err) {
      if (!(err instanceof WordrnnError)) throw err;
      out[path] = { error: err.message };
    }
  }
  return out;
}

const [command, ...rest] = process.argv.slice(2);
const result = command === "cases" ? await runCases(rest[0]) : command === "metadata" ? await readAll(rest) : null;
if (result === null) {
  process.stderr.write("usage: node web/conformance.mjs cases CASES.json | metadata FILE...\n");
  process.exitCode = 2;
} else process.stdout.write(JSON.stringify(result) + "\n");
