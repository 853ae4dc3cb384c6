#!/usr/bin/env node
// Conformance runner for docs/GENERATION.md, used by the tests (and by anyone checking a client):
//   node web/conformance.mjs cases CASES.json   -> JSON [{ids, text} or {error}] for each case, in order
//   node web/conformance.mjs metadata FILE...   -> JSON {FILE: {props} or {error}}: this module's metadata reader
//   node web/conformance.mjs tokenize TEXTS.json -> JSON {MODE: [[tokens, detokenized text], ...]} for
//                                                   {"texts": [...]} in both tokenizer modes
//   node web/conformance.mjs sampler ROWS.json   -> JSON [[token, ...], ...]: for each {logits, strategy, temperature,
//                                                   top_k, top_p, seed, allow_unk, draws}, draws tokens from one
//                                                   generator and the same logits
//   node web/conformance.mjs cache ROWS.json     -> JSON [[value or null (-Infinity), ...], ...]: for each {logits,
//                                                   tokens, hidden, size, theta, lambda}, the neural cache told each
//                                                   token and the state after it, then its row for the logits
// A cases file is {"model": PATH, "cases": [{prompt, words, strategy, temperature, top_k, top_p, seed,
// allow_unk, no_repeat_ngram, repetition_penalty, ...}]}, as the Python tests write it.

import { readFile } from "node:fs/promises";

import * as ort from "onnxruntime-node";

import {
  NeuralCache, SplitMix64, WordrnnError, WordrnnModel, detokenize, generateText, nextToken, readMetadata, samplerSettings, tokenize,
} from "./wordrnn.mjs";

async function runCases(path) {
  const spec = JSON.parse(await readFile(path, "utf8"));
  const model = await WordrnnModel.load(ort, await readFile(spec.model), spec.model, { logSeverityLevel: 3 });
  const results = [];
  for (const c of spec.cases) {
    try {
      const settings = samplerSettings({ strategy: c.strategy, temperature: c.temperature, topK: c.top_k,
        topP: c.top_p, seed: BigInt(c.seed), allowUnk: c.allow_unk, noRepeatNgram: c.no_repeat_ngram ?? 0,
        repetitionPenalty: c.repetition_penalty ?? 1.0 });
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

async function tokenizeAll(path) {
  const { texts } = JSON.parse(await readFile(path, "utf8"));
  const out = {};
  for (const mode of ["default", "whitespace"]) {
    out[mode] = texts.map((text) => {
      const tokens = tokenize(text, mode);
      return [tokens, detokenize(tokens)];
    });
  }
  return out;
}

async function sampleAll(path) {
  const { rows } = JSON.parse(await readFile(path, "utf8"));
  return rows.map((r) => {
    const settings = samplerSettings({ strategy: r.strategy, temperature: r.temperature, topK: r.top_k, topP: r.top_p,
      seed: BigInt(r.seed), allowUnk: r.allow_unk });
    const rng = new SplitMix64(settings.seed);
    const logits = Float32Array.from(r.logits);
    return Array.from({ length: r.draws }, () => nextToken(logits, settings, rng));
  });
}

async function cacheAll(path) {
  const { rows } = JSON.parse(await readFile(path, "utf8"));
  return rows.map((r) => {
    const cache = new NeuralCache({ size: r.size, theta: r.theta, lambda: r.lambda });
    r.tokens.forEach((token, i) => cache.read(token, Float32Array.from(r.hidden[i])));
    return Array.from(cache.mix(Float32Array.from(r.logits)), (v) => (v === -Infinity ? null : v));
  });
}

const COMMANDS = {
  cache: (args) => cacheAll(args[0]), sampler: (args) => sampleAll(args[0]), cases: (args) => runCases(args[0]), metadata: readAll, tokenize: (args) => tokenizeAll(args[0]) };
const [command, ...rest] = process.argv.slice(2);
const result = command in COMMANDS ? await COMMANDS[command](rest) : null;
if (result === null) {
  process.stderr.write("usage: node web/conformance.mjs cases CASES.json | metadata FILE... | tokenize TEXTS.json | " +
    "sampler ROWS.json | cache ROWS.json\n");
  process.exitCode = 2;
} else process.stdout.write(JSON.stringify(result) + "\n");
