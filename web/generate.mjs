#!/usr/bin/env node
// node web/generate.mjs --model FILE --prompt ... --words N: the same flags and the same output as
// `python -m export.generate`, by docs/GENERATION.md, with onnxruntime-node.

import { readFile, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { SEED_LIMIT, TEMPERATURE_MIN, WordrnnError, WordrnnModel, generateText, promptToIds, samplerSettings, unknownWords,
  UNK } from "./wordrnn.mjs";

const HELP = `usage: node web/generate.mjs --model FILE [--prompt TEXT] [--words N] [--num-samples N]
                                [--strategy {sample,greedy}] [--temperature T] [--top-k K] [--top-p P]
                                [--seed S] [--allow-unk] [--no-repeat-ngram N] [--repetition-penalty R]
                                [--no-cache]

Generate verse from an exported wordrnn ONNX model with onnxruntime-node, by docs/GENERATION.md:
the same flags, and for the same file, prompt, settings and seed the same text, as python -m export.generate.
A poem model reads the prompt once and then one token a step, its state carried.

  --model FILE        the .onnx file written by python -m export.onnx
  --no-cache          write without the file's neural cache, if it has one (the model's own probabilities)
  --prompt TEXT       text to continue (default: 'the')
  --words N           tokens to generate: words, punctuation marks and line breaks (default: 60)
  --num-samples N     texts to generate; sample i uses seed --seed + i (default: 1)
  --strategy S        greedy: always the most likely token; sample: draw from the distribution (default: sample)
  --temperature T     divide the logits by this, at least ${TEMPERATURE_MIN} (below it use --strategy greedy;
                      default: 1.0)
  --top-k K           keep only the k most likely tokens (default: 0, all)
  --top-p P           keep the smallest set of tokens whose probability reaches p (default: 1.0, all)
  --seed S            seed of the sampler's SplitMix64 generator, 0 to 2**64-1 (default: 0)
  --allow-unk         let the model write <unk> (default: never)
  --no-repeat-ngram N never write an N-gram (N tokens in a row) that the text, prompt included, already holds
                      (default: 0, off)
  --repetition-penalty R
                      for every token already in the text: a positive logit divided by R, a negative one
                      multiplied by R (Keskar et al. 2019; 1.2 is common; default: 1.0, off)
`;

const OPTIONS = {
  model: { type: "string" },
  prompt: { type: "string", default: "the" },
  words: { type: "string", default: "60" },
  "num-samples": { type: "string", default: "1" },
  strategy: { type: "string", default: "sample" },
  temperature: { type: "string", default: "1.0" },
  "top-k": { type: "string", default: "0" },
  "top-p": { type: "string", default: "1.0" },
  seed: { type: "string", default: "0" },
  "allow-unk": { type: "boolean", default: false },
  "no-repeat-ngram": { type: "string", default: "0" },
  "repetition-penalty": { type: "string", default: "1.0" },
  "no-cache": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
};

/** Python's repr of a string, for the note about unknown words. */
function repr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  return quote + text.replaceAll("\\", "\\\\").replaceAll(quote, "\\" + quote).replaceAll("\n", "\\n") + quote;
}

function integer(name, text) {
  if (!/^\s*[+-]?\d+\s*$/.test(text)) throw new WordrnnError(`argument --${name}: invalid int value: ${repr(text)}`);
  return BigInt(text.trim());
}

function float(name, text) {
  const t = text.trim().toLowerCase();
  const special = { inf: Infinity, "+inf": Infinity, "-inf": -Infinity, infinity: Infinity, nan: NaN };
  if (t in special) return special[t];
  const value = Number(t);
  if (t === "" || Number.isNaN(value)) throw new WordrnnError(`argument --${name}: invalid float value: ${repr(text)}`);
  return value;
}

/**
 * "--words -5" as "--words=-5": argparse reads a negative number after a flag as its value (so Python answers with
 * the range message), where parseArgs would call the flag's argument ambiguous.
 */
function joinNegativeValues(argv) {
  const out = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith("--") ? argv[i].slice(2) : null;
    if (OPTIONS[name]?.type === "string" && /^-(\d|\.\d|inf)/i.test(argv[i + 1] ?? "")) {
      out.push(`${argv[i]}=${argv[++i]}`);
    } else out.push(argv[i]);
  }
  return out;
}

function parse(argv) {
  let values;
  try {
    ({ values } = parseArgs({ args: joinNegativeValues(argv), options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new WordrnnError(err.message);
  }
  if (values.help) return { help: true };
  if (values.model === undefined) throw new WordrnnError("the following arguments are required: --model");
  if (!["sample", "greedy"].includes(values.strategy)) {
    throw new WordrnnError(`argument --strategy: invalid choice: ${repr(values.strategy)} (choose from 'sample', 'greedy')`);
  }
  const words = integer("words", values.words);
  const numSamples = integer("num-samples", values["num-samples"]);
  const topK = integer("top-k", values["top-k"]);
  const seed = integer("seed", values.seed);
  const temperature = float("temperature", values.temperature);
  const topP = float("top-p", values["top-p"]);
  const noRepeatNgram = integer("no-repeat-ngram", values["no-repeat-ngram"]);
  const repetitionPenalty = float("repetition-penalty", values["repetition-penalty"]);
  if (words <= 0n) throw new WordrnnError(`--words must be a positive number, got ${words}`);
  if (numSamples <= 0n) throw new WordrnnError(`--num-samples must be a positive number, got ${numSamples}`);
  if (values.strategy === "greedy" && numSamples > 1n) {
    throw new WordrnnError(`--strategy greedy draws no random numbers, so all ${numSamples} samples would be the ` +
      "same text; use --num-samples 1, or --strategy sample for different texts");
  }
  const settings = samplerSettings({ strategy: values.strategy, temperature, topK: Number(topK), topP, seed,
    allowUnk: values["allow-unk"], noRepeatNgram: Number(noRepeatNgram), repetitionPenalty });
  const last = seed + numSamples - 1n; // sample i uses seed --seed + i
  if (last >= SEED_LIMIT) {
    throw new WordrnnError(`--seed ${seed} with --num-samples ${numSamples} gives the last sample seed ${last}, past ` +
      `2**64 - 1 (sample i uses --seed + i); give a seed up to ${SEED_LIMIT - numSamples} or fewer samples`);
  }
  return { model: values.model, prompt: values.prompt, words: Number(words), numSamples: Number(numSamples),
    settings, noCache: values["no-cache"] };
}

/** onnxruntime-node, imported once the flags are read: a checkout without node_modules is one line saying what to do. */
async function onnxruntime() {
  try {
    return await import("onnxruntime-node");
  } catch (err) {
    if (err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
    const root = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
    throw new WordrnnError(`onnxruntime-node is not installed in ${root}/node_modules; run \`make web\` (or ` +
      `\`npm ci\`) in ${root} first`);
  }
}

async function main(argv) {
  const args = parse(argv);
  if (args.help) {
    process.stdout.write(HELP);
    return;
  }
  const info = await stat(args.model).catch(() => null);
  if (!info?.isFile()) {
    throw new WordrnnError(`${args.model} is not a file; give the .onnx file written by python -m export.onnx`);
  }
  const model = await WordrnnModel.load(await onnxruntime(), await readFile(args.model), args.model,
    { logSeverityLevel: 4, executionProviders: ["cpu"] });
  if (args.noCache) model.cache = null;
  promptToIds(args.prompt, model.card); // refuses an empty or all-unknown prompt before anything is printed
  const unknown = unknownWords(args.prompt, model.card);
  if (unknown.length) process.stderr.write(`note: ${unknown.map(repr).join(", ")} not in the vocabulary; read as ${UNK}\n`);
  for (let i = 0; i < args.numSamples; i++) {
    const settings = { ...args.settings, seed: args.settings.seed + BigInt(i) };
    if (args.numSamples > 1) process.stdout.write((i ? "\n" : "") + `--- sample ${i + 1}, seed ${settings.seed} ---\n`);
    await generateText(model, args.prompt, args.words, settings, (piece) => {
      process.stdout.write(piece);
    });
    process.stdout.write("\n");
  }
}

main(process.argv.slice(2)).catch((err) => {
  if (!(err instanceof WordrnnError)) throw err;
  process.stderr.write(`error: ${err.message}\n`);
  process.exitCode = 2;
});
