// wordrnn generation in JavaScript, by the contract of docs/GENERATION.md ("wordrnn-generation 4", which reads the
// window files of "wordrnn-generation 1", the poem files of "wordrnn-generation 2" and the cached poem files of
// "wordrnn-generation 3" as they are).
//
// One ES module that runs unchanged in Node.js and in the browser: it imports nothing, and the caller hands
// it onnxruntime (onnxruntime-node in Node, onnxruntime-web in the page). Everything here mirrors the
// Python reference step for step: data/tokenizer.py (tokenizer, detokenizer), wordrnn/core/sampling.py
// (SplitMix64 and the sampler) and wordrnn/run/generation.py (prompt handling and generation).

export const GENERATION_V1 = "wordrnn-generation 1";
export const GENERATION = "wordrnn-generation 2";
// A file names the oldest version that describes it: a window model 1, a poem model (its state carried) 2.
const VERSION_OF_CONTEXT = { window: GENERATION_V1, poem: GENERATION };
// A poem model with a neural cache (wordrnn.cache) names version 3: a version-2 client would write without it.
export const GENERATION_CACHE = "wordrnn-generation 3";
// Version 4 names the cache generation applies (wordrnn.cache.write) apart from the one perplexity is scored with.
export const GENERATION_WRITE = "wordrnn-generation 4";
const CACHE_VERSIONS = { [GENERATION_CACHE]: 3, [GENERATION_WRITE]: 4 };
const VERSIONS = [GENERATION_V1, GENERATION, GENERATION_CACHE, GENERATION_WRITE];
export const FORMAT = "1";
export const KEYS = ["wordrnn.format", "wordrnn.config", "wordrnn.vocab", "wordrnn.tokenizer", "wordrnn.source",
  "wordrnn.generation"];
export const INPUT_NAME = "tokens";
export const OUTPUT_NAME = "logits";
export const UNK = "<unk>";
export const UNK_ID = 0;
export const NEWLINE = "\n";
const MODELS = ["onehot", "embedding"];
const TOKENIZERS = ["default", "whitespace"];
const EXPORT_AGAIN = "export it again with python -m export.onnx";
export const STRATEGIES = ["sample", "greedy"];

/** Bad input (a file, a prompt, a setting): the message says what is wrong and what to do. */
export class WordrnnError extends Error {
  constructor(message) {
    super(message);
    this.name = "WordrnnError";
  }
}

// ------------------------------------------------------------------ metadata: ModelProto field 14

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A protobuf reader over bytes that refuses to read past the end. */
class ProtoReader {
  constructor(bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
  }

  done() {
    return this.pos >= this.end;
  }

  varint() {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WordrnnError("truncated");
      const byte = this.bytes[this.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new WordrnnError("a varint longer than 10 bytes");
  }

  /** [field number, wire type] of the next field. */
  tag() {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new WordrnnError("field number 0");
    return [field, tag % 8];
  }

  /** The [start, end) of a length-delimited field's payload. */
  span() {
    const length = this.varint();
    if (length > this.end - this.pos) throw new WordrnnError("truncated");
    const start = this.pos;
    this.pos += length;
    return [start, this.pos];
  }

  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 2) this.span();
    else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4;
      if (size > this.end - this.pos) throw new WordrnnError("truncated");
      this.pos += size;
    } else throw new WordrnnError(`wire type ${wire}`);
  }

  string([start, end]) {
    return utf8.decode(this.bytes.subarray(start, end));
  }
}

/** One StringStringEntryProto: {1: key, 2: value}, both strings, empty when absent. */
function readEntry(reader, [start, end]) {
  const entry = new ProtoReader(reader.bytes, start, end);
  let key = "";
  let value = "";
  while (!entry.done()) {
    const [field, wire] = entry.tag();
    if ((field === 1 || field === 2) && wire === 2) {
      const text = entry.string(entry.span());
      if (field === 1) key = text;
      else value = text;
    } else entry.skip(wire);
  }
  return [key, value];
}

/**
 * The model's metadata_props (ModelProto field 14) as a Map, later entries winning, as `onnx` reads them.
 * Reads only the top level of the file and skips the graph, so it is quick for any model size.
 * Throws WordrnnError for bytes that are not a protobuf message (a truncated or foreign file).
 */
export function readMetadata(bytes, where = "the file") {
  const reader = new ProtoReader(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  const props = new Map();
  try {
    while (!reader.done()) {
      const [field, wire] = reader.tag();
      if (field === 14 && wire === 2) {
        const [key, value] = readEntry(reader, reader.span());
        props.set(key, value);
      } else reader.skip(wire);
    }
  } catch (err) {
    if (!(err instanceof WordrnnError) && !(err instanceof TypeError)) throw err;
    throw new WordrnnError(`${where} is not an ONNX model (${err.message}); give the .onnx file written by ` +
      "python -m export.onnx");
  }
  return props;
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new WordrnnError(`${what} (${err.message})`);
  }
}

/** The model card from metadata_props: the same checks, in the same order, as export/metadata.py. */
export function cardFromMetadata(props, where = "the file") {
  const missing = KEYS.filter((key) => !props.has(key));
  if (missing.length === KEYS.length) {
    throw new WordrnnError(`${where} has no wordrnn metadata; export a run folder with python -m export.onnx`);
  }
  if (missing.length) {
    throw new WordrnnError(`${where} lacks the metadata ${missing.join(", ")}; export it again with ` +
      "python -m export.onnx");
  }
  if (props.get("wordrnn.format") !== FORMAT) {
    throw new WordrnnError(`${where} has wordrnn metadata format '${props.get("wordrnn.format")}'; ` +
      `this version reads '${FORMAT}'`);
  }
  const version = props.get("wordrnn.generation");
  if (!VERSIONS.includes(version)) {
    throw new WordrnnError(`${where} follows the generation contract '${version}'; ` +
      `this version follows ${VERSIONS.slice(0, -1).map((v) => `'${v}'`).join(", ")} and '${VERSIONS.at(-1)}'`);
  }
  const unreadable = `${where} has unreadable wordrnn metadata`;
  const config = parseJson(props.get("wordrnn.config"), unreadable);
  const tokens = parseJson(props.get("wordrnn.vocab"), unreadable);
  const tokenizer = parseJson(props.get("wordrnn.tokenizer"), unreadable);
  const source = parseJson(props.get("wordrnn.source"), unreadable);
  if (!config || typeof config !== "object" || !Array.isArray(tokens) || !tokens.every((t) => typeof t === "string")
      || !tokenizer || typeof tokenizer !== "object") {
    throw new WordrnnError(`${unreadable}; export it again`);
  }
  if (tokens[0] !== UNK) throw new WordrnnError(`${unreadable} (a vocabulary starts with '${UNK}'); export it again`);
  // The cell is the graph's business: this client learns the state it carries from wordrnn.state, not from a list.
  const cell = config.cell ?? "rnn";
  if (!MODELS.includes(config.model) || typeof cell !== "string" || !TOKENIZERS.includes(tokenizer.mode)
      || !Number.isInteger(config.seq_len) || config.seq_len <= 0) {
    throw new WordrnnError(`${where} has wordrnn metadata this version does not understand (model ` +
      `'${config.model}', cell '${cell}', tokenizer '${tokenizer.mode}', seq_len ${config.seq_len})`);
  }
  if (tokens.length !== config.vocab_size) {
    throw new WordrnnError(`${where}: the vocabulary in the metadata has ${tokens.length} tokens but the config ` +
      `says ${config.vocab_size}; export it again`);
  }
  const members = props.get("wordrnn.ensemble") ?? "1"; // an ensemble of N members: its state is N times as wide
  if (members !== String(config.ensemble ?? 1)) {
    throw new WordrnnError(`${where}: the metadata's wordrnn.ensemble is '${members}' but the config says ensemble ` +
      `${config.ensemble ?? 1}; export it again`);
  }
  const { context, states } = readContext(props, config, where);
  const cache = readCache(props, config, where);
  const index = new Map();
  tokens.forEach((token, id) => index.set(token, id));
  return {
    config, tokens, index, cell, context, states, cache, model: config.model, seqLen: config.seq_len,
    vocabSize: tokens.length,
    tokenizer: tokenizer.mode, minFreq: tokenizer.min_freq,
    source: source && typeof source === "object" && !Array.isArray(source) ? source : {},
    get framework() { return String(this.source.framework ?? "unknown"); },
    get valPpl() { return typeof this.source.val_ppl === "number" ? this.source.val_ppl : null; },
  };
}

/**
 * The context and the states it carries, as export/metadata.py checks them: a version-1 file predates
 * wordrnn.context and is a window model; a poem model names each state [batch, size] it takes in and gives back.
 */
function readContext(props, config, where) {
  let version = props.get("wordrnn.generation");
  if (version in CACHE_VERSIONS) version = GENERATION; // the cache adds to version 2's poem model: readCache checks it
  const context = props.get("wordrnn.context") ?? (version === GENERATION_V1 ? "window" : undefined);
  if (!(context in VERSION_OF_CONTEXT)) {
    throw new WordrnnError(`${where} has wordrnn metadata this version does not understand ` +
      `(wordrnn.context '${props.get("wordrnn.context")}'); export it again`);
  }
  const configContext = config.context ?? "window";
  if (context !== configContext) {
    throw new WordrnnError(`${where}: the metadata says wordrnn.context ${context} but the config says context ` +
      `${configContext}; export it again`);
  }
  if (context === "poem" && version === GENERATION_V1) {
    throw new WordrnnError(`${where} holds a poem model but follows '${version}', which has no state; ` +
      `a poem model follows '${GENERATION}': export it again`);
  }
  const states = props.has("wordrnn.state") ? parseJson(props.get("wordrnn.state"),
    `${where} has unreadable wordrnn metadata (wordrnn.state)`) : [];
  const wellFormed = Array.isArray(states) && states.every((s) => s && typeof s.input === "string"
    && typeof s.output === "string" && Number.isInteger(s.size) && s.size > 0);
  if (!wellFormed || (context === "poem") !== (states.length > 0)) {
    throw new WordrnnError(`${where}: the metadata's wordrnn.state is ${JSON.stringify(states)}, which a ` +
      `${context} model cannot carry; export it again`);
  }
  return { context, states };
}

/**
 * The neural cache a version-3 or -4 file names, {scoring, writing, version} with scoring and writing each
 * {size, theta, lambda} (writing null: write without it; version 3's one setting serves both), or null (versions 1
 * and 2 have none), with export/metadata.py's checks and messages. Only a poem model can hold one.
 */
function readCache(props, config, where) {
  const version = props.get("wordrnn.generation");
  const cached = version in CACHE_VERSIONS;
  const has = props.has("wordrnn.cache");
  if (has !== cached) {
    throw new WordrnnError(`${where}: the metadata follows '${version}' but ${has ? "holds" : "lacks"} ` +
      `wordrnn.cache; a poem model with a neural cache follows '${GENERATION_WRITE}': export it again`);
  }
  const hasWrite = props.has("wordrnn.cache.write");
  if (hasWrite !== (version === GENERATION_WRITE)) {
    throw new WordrnnError(`${where}: the metadata follows '${version}' but ${hasWrite ? "holds" : "lacks"} ` +
      `wordrnn.cache.write; a cache for writing follows '${GENERATION_WRITE}': export it again`);
  }
  if (!has) return null;
  const context = config.context ?? "window";
  if (context !== "poem") {
    throw new WordrnnError(`${where} holds a ${context} model with a neural cache, which only a poem model can ` +
      "have; export it again");
  }
  const scoring = cacheSettings(props, "wordrnn.cache", where);
  if (version === GENERATION_CACHE) return { scoring, writing: scoring, version: 3 };
  const writing = parseJson(props.get("wordrnn.cache.write"),
    `${where} has unreadable wordrnn metadata (wordrnn.cache.write)`) === null ? null
    : cacheSettings(props, "wordrnn.cache.write", where);
  return { scoring, writing, version: 4 };
}

/** One cache setting {size, theta, lambda} from the metadata's key, as wordrnn/core/cache.py's from_json checks it. */
function cacheSettings(props, key, where) {
  const value = parseJson(props.get(key), `${where} has unreadable wordrnn metadata (${key})`);
  const keys = value && typeof value === "object" && !Array.isArray(value) ? Object.keys(value).sort() : [];
  if (keys.join(",") !== "lambda,size,theta") {
    throw new WordrnnError(`${where}: the metadata's ${key} is ${JSON.stringify(value)}, not an object of ` +
      "size, theta and lambda; export it again");
  }
  const { size, theta, lambda } = value;
  if (!Number.isInteger(size) || size < 1) {
    throw new WordrnnError(`${where}: the cache size is a whole number of positions, at least 1, got ${size}`);
  }
  if (typeof theta !== "number" || !Number.isFinite(theta) || theta < 0) {
    throw new WordrnnError(`${where}: the cache's theta (flatness) is a finite number >= 0, got ${theta}`);
  }
  if (typeof lambda !== "number" || !(lambda > 0 && lambda < 1)) {
    throw new WordrnnError(`${where}: the cache's lambda (weight) lies strictly between 0 and 1, got ${lambda}`);
  }
  return { size, theta, lambda };
}

// ------------------------------------------------------------------ the neural cache (section 4c)

/**
 * The neural cache of one text, as wordrnn/core/cache.py's NeuralCache: read(token, h) after the model reads each
 * token, then mix(logits) for the row the sampler reads. Every sum is sequential, in the order the contract states.
 */
export class NeuralCache {
  constructor({ size, theta, lambda }) {
    this.size = size;
    this.theta = theta;
    this.logKeep = Math.log1p(-lambda); // log(1 - lambda)
    this.logLambda = Math.log(lambda);
    this.keys = []; // h_i as Float64Array, oldest first
    this.values = []; // the token that followed position i
    this.current = null; // h_t: it joins the keys once its next token is read
  }

  /** The model read `token` and is now in state `hidden` (its h, [H]). */
  read(token, hidden) {
    if (this.current !== null) {
      this.keys.push(this.current);
      this.values.push(token);
      if (this.keys.length > this.size) {
        this.keys.shift();
        this.values.shift();
      }
    }
    this.current = Float64Array.from(hidden);
  }

  /** float64 log-probabilities [V]: the model's (from float32 logits) mixed with the cache's. */
  mix(logits) {
    const n = logits.length;
    const lp = new Float64Array(n);
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    let s = 0;
    for (let i = 0; i < n; i++) {
      lp[i] = logits[i] - max;
      s += Math.exp(lp[i]);
    }
    const logS = Math.log(s);
    for (let i = 0; i < n; i++) lp[i] -= logS;
    const m = this.keys.length;
    if (m === 0 || this.current === null) return lp;
    const h = this.current;
    const scores = new Float64Array(m);
    let top = -Infinity;
    for (let j = 0; j < m; j++) {
      const key = this.keys[j];
      let dot = 0;
      for (let k = 0; k < key.length; k++) dot += key[k] * h[k];
      scores[j] = this.theta * dot;
      if (scores[j] > top) top = scores[j];
    }
    let total = 0;
    const counts = new Map(); // token -> its weights' sum, added oldest first
    for (let j = 0; j < m; j++) {
      const e = Math.exp(scores[j] - top);
      total += e;
      counts.set(this.values[j], (counts.get(this.values[j]) ?? 0) + e);
    }
    for (let i = 0; i < n; i++) lp[i] += this.logKeep; // log(1 - lambda) + log p_model: a token the cache lacks
    for (const [token, c] of counts) {
      const a = lp[token];
      const b = this.logLambda + Math.log(c / total);
      const hi = Math.max(a, b);
      if (hi !== -Infinity) lp[token] = hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
    }
    return lp;
  }
}

// ------------------------------------------------------------------ tokenizer and detokenizer

// Python's str.isspace characters: the contract's whitespace.
const WS = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WORD = "[\\p{L}\\p{N}]";
const TOKEN = new RegExp(`${WORD}+(?:'${WORD}+)*|\\n|[^\\p{L}\\p{N}_${WS}]|_`, "gu");
const WHITESPACE_RUN = new RegExp(`[${WS}]+`, "u");

/** LF line ends, straight quotes, lower case, NFC. */
export function normalize(text) {
  return text.replace(/\r\n?/g, "\n").replace(/[\u2018\u2019\u201a\u201b]/g, "'")
    .replace(/[\u201c\u201d\u201e\u201f]/g, '"').toLowerCase().normalize("NFC");
}

/** At most two line breaks in a row, none at the start or the end. */
export function collapseNewlines(tokens) {
  const out = [];
  let run = 0;
  for (const token of tokens) {
    if (token === NEWLINE) {
      run += 1;
      if (run <= 2 && out.length) out.push(token);
      continue;
    }
    run = 0;
    out.push(token);
  }
  while (out.length && out[out.length - 1] === NEWLINE) out.pop();
  return out;
}

export function tokenize(text, mode = "default") {
  if (mode === "whitespace") return text.toLowerCase().split(WHITESPACE_RUN).filter((t) => t !== "");
  if (mode !== "default") throw new WordrnnError(`unknown tokenizer mode '${mode}'`);
  return collapseNewlines(normalize(text).match(TOKEN) ?? []);
}

const NO_SPACE_BEFORE = new Set([",", ".", ";", ":", "!", "?", ")", "]", "}", "'", "'s", "n't"]);
const NO_SPACE_AFTER = new Set(["(", "[", "{"]);

/** Tokens in, text out, one token at a time; push returns only the text the token adds. */
export class Detokenizer {
  constructor() {
    this.last = "";
  }

  push(token) {
    const last = this.last;
    const space = last !== "" && last !== NEWLINE && token !== NEWLINE && !NO_SPACE_AFTER.has(last[last.length - 1])
      && !NO_SPACE_BEFORE.has(token);
    this.last = token;
    return space ? " " + token : token;
  }
}

export function detokenize(tokens) {
  const detok = new Detokenizer();
  return tokens.map((t) => detok.push(t)).join("");
}

// ------------------------------------------------------------------ SplitMix64 and the sampler

const MASK64 = (1n << 64n) - 1n;
export const SEED_LIMIT = 1n << 64n;
// The lowest temperature, as wordrnn/core/sampling.py's TEMPERATURE_MIN (docs/GENERATION.md, section 4).
export const TEMPERATURE_MIN = 0.01;

export class SplitMix64 {
  constructor(seed) {
    const s = BigInt(seed);
    if (s < 0n || s >= SEED_LIMIT) throw new WordrnnError(`a seed is a whole number from 0 to 2**64 - 1, got ${seed}`);
    this.state = s;
  }

  nextU64() {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /** A float64 in [0, 1): the top 53 bits of the next output times 2**-53. */
  random() {
    return Number(this.nextU64() >> 11n) * 2 ** -53;
  }
}

/** A float as Python's repr writes it (0.0, 1.5, inf, 1e-07), so that messages match Python's to the byte. */
export function pyFloat(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return x.toFixed(1);
  return String(x).replace(/e([+-])(\d)$/, "e$10$2");
}

/** Defaults of every generate command; seed is a BigInt-able whole number. */
export function samplerSettings(values = {}) {
  const s = { strategy: "sample", temperature: 1.0, topK: 0, topP: 1.0, seed: 0n, allowUnk: false, noRepeatNgram: 0,
    repetitionPenalty: 1.0, ...values };
  if (!STRATEGIES.includes(s.strategy)) {
    throw new WordrnnError(`unknown --strategy '${s.strategy}'; choose one of ${STRATEGIES.join(", ")}`);
  }
  if (!(Number.isFinite(s.temperature) && s.temperature >= TEMPERATURE_MIN)) {
    throw new WordrnnError(`--temperature must be a finite number of at least ${TEMPERATURE_MIN} (below it sampling ` +
      `is greedy in all but name): for the most likely token use --strategy greedy; got ${pyFloat(s.temperature)}`);
  }
  if (!Number.isInteger(s.topK) || s.topK < 0) {
    throw new WordrnnError(`--top-k must be 0 (off) or a positive number, got ${s.topK}`);
  }
  if (!(s.topP > 0 && s.topP <= 1)) throw new WordrnnError(`--top-p must lie in (0, 1], got ${pyFloat(s.topP)}`);
  let seed;
  try {
    seed = BigInt(s.seed);
  } catch {
    seed = -1n;
  }
  if (seed < 0n || seed >= SEED_LIMIT) {
    throw new WordrnnError(`--seed must be a whole number from 0 to 2**64 - 1, got ${s.seed}`);
  }
  if (!Number.isInteger(s.noRepeatNgram) || s.noRepeatNgram < 0) {
    throw new WordrnnError(`--no-repeat-ngram must be 0 (off) or a positive number, got ${s.noRepeatNgram}`);
  }
  if (!(Number.isFinite(s.repetitionPenalty) && s.repetitionPenalty > 0)) {
    throw new WordrnnError(`--repetition-penalty must be a positive number (1: off), got ${pyFloat(s.repetitionPenalty)}`);
  }
  return { ...s, seed };
}

/** Step 1: float64 logits, <unk> at -Infinity unless allowed (or the only token). */
export function maskedLogits(logits, settings) {
  const z = new Float64Array(logits);
  if (!settings.allowUnk && z.length > 1) z[UNK_ID] = -Infinity;
  return z;
}

/**
 * Steps 1a and 1b (section 5a), as Hugging Face's generate applies them, on float64 logits z given the ids of the
 * text so far (prompt included): the repetition penalty, then the ban of tokens that would repeat an n-gram.
 */
export function applyRepetitionControls(masked, history, settings) {
  const z = new Float64Array(masked);
  const r = settings.repetitionPenalty;
  if (r !== 1 && history.length) {
    for (const id of new Set(history)) z[id] = z[id] < 0 ? z[id] * r : z[id] / r;
  }
  const banned = bannedByNgrams(history, settings.noRepeatNgram);
  if (banned.size) {
    const cut = new Float64Array(z);
    for (const id of banned) cut[id] = -Infinity;
    if (cut.some((v) => Number.isFinite(v))) return cut; // a ban that leaves no token changes nothing
  }
  return z;
}

/** The ids that would complete an n-gram already in history (none when n is 0). */
export function bannedByNgrams(history, n) {
  const banned = new Set();
  if (n <= 0 || history.length < n - 1) return banned;
  const start = history.length - n + 1;
  for (let i = 0; i + n <= history.length; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = history[i + j] === history[start + j];
    if (same) banned.add(history[i + n - 1]);
  }
  return banned;
}

export function argmax(z) {
  let best = 0;
  for (let i = 1; i < z.length; i++) if (z[i] > z[best]) best = i;
  return best;
}

/** Left-to-right float64 sum in token-id order. */
function total(values) {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s;
}

/**
 * Steps 2 to 5: temperature, top-k, softmax, top-p and renormalization. The loops are fused (this runs once per
 * token), but every value and every sum is the one the contract's step-by-step order gives.
 */
export function probabilities(masked, settings) {
  const n = masked.length;
  const z = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    z[i] = masked[i] / settings.temperature;
    if (z[i] > max) max = z[i]; // the top-k cut below never removes the maximum
  }
  const kth = settings.topK > 0 && settings.topK < n ? z.slice().sort()[n - settings.topK] : -Infinity;
  const p = z; // reused in place: each z[i] is read before p[i] is written
  let s = 0;
  for (let i = 0; i < n; i++) {
    p[i] = z[i] < kth ? 0 : Math.exp(z[i] - max);
    s += p[i];
  }
  for (let i = 0; i < n; i++) p[i] /= s;
  if (settings.topP < 1) topP(p, settings.topP);
  return p;
}

/** Step 5's top-p cut, in place: keep the most likely tokens until their sum reaches topP, then renormalize. */
function topP(p, limit) {
  const n = p.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let kept = n;
  let c = 0;
  for (let j = 0; j < n; j++) {
    c += p[order[j]];
    if (c >= limit) {
      kept = j + 1;
      break;
    }
  }
  for (let j = kept; j < n; j++) p[order[j]] = 0;
  const s = total(p);
  for (let i = 0; i < n; i++) p[i] /= s;
}

/** Step 6: the first token whose cumulative probability exceeds u times the total. */
export function pick(p, u) {
  const n = p.length;
  const target = u * total(p); // total(p) is the last cumulative sum: the same additions in the same order
  let c = 0;
  for (let i = 0; i < n; i++) {
    c += p[i];
    if (c > target) return i;
  }
  for (let i = n - 1; i > 0; i--) if (p[i] > 0) return i;
  return 0;
}

/** The next token id from one row of logits, given the ids of the text so far (read by the repetition controls). */
export function nextToken(logits, settings, rng, history = []) {
  const z = applyRepetitionControls(maskedLogits(logits, settings), history, settings);
  if (settings.strategy === "greedy") return argmax(z);
  return pick(probabilities(z, settings), rng.random());
}

// ------------------------------------------------------------------ the model and generation

/** The inputs and outputs a card's graph must have: [{name, type, shape}] with null for a dynamic axis. */
export function cardInterface(card) {
  const V = card.vocabSize;
  const tokens = { name: INPUT_NAME, type: "int64", shape: [null, null] };
  const logits = { name: OUTPUT_NAME, type: "float32", shape: card.context === "window" ? [null, V] : [null, null, V] };
  const state = (name, size) => ({ name, type: "float32", shape: [null, size] });
  return {
    inputs: [tokens, ...card.states.map((s) => state(s.input, s.size))],
    outputs: [logits, ...card.states.map((s) => state(s.output, s.size))],
  };
}

const TYPE_WORDS = { float32: "float" }; // Python's onnxruntime spelling, so that both clients say the same

/** "tokens int64 [?, ?], h0 float [?, 16]". */
function describe(specs) {
  return specs.map((s) => `${s.name} ${TYPE_WORDS[s.type] ?? s.type} ` +
    `[${s.shape.map((d) => (typeof d === "number" ? String(d) : "?")).join(", ")}]`).join(", ");
}

/** The graph's inputs or outputs as it declares them (a symbolic axis: null). */
function declared(names, metadata) {
  return names.map((name, i) => {
    const m = metadata?.[i];
    const shape = m?.isTensor ? m.shape.map((d) => (typeof d === "number" && d >= 0 ? d : null)) : [];
    return { name, type: m?.isTensor ? m.type : "unknown", shape };
  });
}

function fits(got, want) {
  return got.name === want.name && got.type === want.type && got.shape.length === want.shape.length
    && got.shape.every((d, i) => d === null || want.shape[i] === null || d === want.shape[i]);
}

/** An exported .onnx file open in onnxruntime, with its model card. */
export class WordrnnModel {
  constructor(ort, session, card, where) {
    this.ort = ort;
    this.session = session;
    this.card = card;
    this.where = where;
    // the neural cache generation applies: the file's writing setting (version 4; version 3's one setting);
    // null turns it off (--no-cache)
    this.cache = card.cache ? card.cache.writing : null;
  }

  /**
   * Read the card first (quick, and a clear message for a foreign file), then start onnxruntime and hold the
   * graph to the card: its inputs and outputs as declared, and the widths it gives for one probe token.
   */
  static async load(ort, bytes, where = "the file", sessionOptions = {}) {
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const card = cardFromMetadata(readMetadata(data, where), where);
    let session;
    try {
      session = await ort.InferenceSession.create(data, sessionOptions);
    } catch (err) {
      const reason = String(err?.message ?? err).split("\n")[0];
      throw new WordrnnError(`${where} is not an ONNX model onnxruntime can load (${reason})`);
    }
    const model = new WordrnnModel(ort, session, card, where);
    await model.checkInterface();
    return model;
  }

  /** Throw one line naming both sides where the graph does not take or give what the card describes. */
  async checkInterface() {
    const { card, session, where } = this;
    const want = cardInterface(card);
    const got = { inputs: declared(session.inputNames, session.inputMetadata),
      outputs: declared(session.outputNames, session.outputMetadata) };
    const what = `a ${card.context} ${card.cell} model of ${card.vocabSize} tokens`;
    for (const kind of ["inputs", "outputs"]) {
      const byName = new Map(got[kind].map((s) => [s.name, s]));
      const names = (specs) => specs.map((s) => s.name).sort().join(",");
      if (names(got[kind]) !== names(want[kind]) || !want[kind].every((s) => fits(byName.get(s.name), s))) {
        throw new WordrnnError(`${where}: the graph's ${kind} are ${describe(got[kind])} but its metadata ` +
          `describes ${what}, whose ${kind} are ${describe(want[kind])}; ${EXPORT_AGAIN}`);
      }
    }
    let result;
    try {
      result = card.states.length ? await this.run([UNK_ID], this.zeroState()) : { logits: await this.window([UNK_ID]) };
    } catch (err) {
      if (err instanceof WordrnnError) throw err;
      const reason = String(err?.message ?? err).split("\n")[0];
      throw new WordrnnError(`${where}: the graph fails on one token (${reason}); ${EXPORT_AGAIN}`);
    }
    const values = [result.rawLogits ?? result.logits, ...(result.state ?? [])];
    want.outputs.forEach((spec, i) => {
      const dims = values[i].dims;
      if (dims.length !== spec.shape.length || dims[dims.length - 1] !== spec.shape[spec.shape.length - 1]) {
        throw new WordrnnError(`${where}: the graph's output ${spec.name} is [${dims.join(", ")}] for one token ` +
          `but its metadata describes ${what}, whose ${spec.name} is ${spec.shape[spec.shape.length - 1]} wide; ` +
          EXPORT_AGAIN);
      }
    });
  }

  tokens(ids) {
    return new this.ort.Tensor("int64", BigInt64Array.from(ids, (id) => BigInt(id)), [1, ids.length]);
  }

  /** A window model: the output tensor for the context ids, read from a zero state. */
  async window(context) {
    const result = await this.session.run({ [INPUT_NAME]: this.tokens(context) });
    return result[OUTPUT_NAME];
  }

  /** float32 logits [V] of the next token after the context ids (a window model). */
  async logits(context) {
    return (await this.window(context)).data;
  }

  /** A poem model's state at the start of a poem: one zero tensor [1, size] per state. */
  zeroState() {
    return this.card.states.map((s) => new this.ort.Tensor("float32", new Float32Array(s.size), [1, s.size]));
  }

  /**
   * A poem model from `state` (the tensors of the last run, or zeroState()): {logits: float32 [V] after the last
   * id, rawLogits: the output tensor [1, T, V], state: the tensors to pass back}.
   */
  async run(ids, state) {
    const { states } = this.card;
    if (!states.length) {
      throw new WordrnnError(`${this.where} is a window model: it takes tokens alone and carries no state`);
    }
    const fine = Array.isArray(state) && state.length === states.length && state.every((t, i) => t?.type === "float32"
      && t.dims.length === 2 && t.dims[0] === 1 && t.dims[1] === states[i].size);
    if (!fine) {
      const names = states.map((s) => `${s.input} float32 [1, ${s.size}]`).join(", ");
      const got = Array.isArray(state) ? state.map((t) => `${t?.type} [${t?.dims?.join(", ")}]`).join(", ") : "no state";
      throw new WordrnnError(`${this.where} is a poem model: it needs its state ${names} beside the tokens, got ` +
        `${got}; start a poem from zeroState()`);
    }
    const feeds = { [INPUT_NAME]: this.tokens(ids) };
    states.forEach((s, i) => { feeds[s.input] = state[i]; });
    const result = await this.session.run(feeds);
    const raw = result[OUTPUT_NAME];
    const V = raw.dims[raw.dims.length - 1];
    return { logits: raw.data.subarray(raw.data.length - V), rawLogits: raw, state: states.map((s) => result[s.output]) };
  }

  /**
   * A fresh generation feed, feed(ids) -> float32 logits [V] after the last of the ids not yet seen: a poem
   * model runs only those, from the state it kept (so a token costs the same however long the text); a window
   * model keeps the last seq_len ids and reads them from a zero state.
   */
  newFeed() {
    if (this.card.states.length && this.cache) {
      // One token a step, prompt included: the graph gives only the last state, and the cache needs each (4c).
      const cache = new NeuralCache(this.cache);
      let state = this.zeroState();
      return async (ids) => {
        let result;
        for (const id of ids) {
          result = await this.run([id], state);
          state = result.state;
          cache.read(id, state[0].data);
        }
        return cache.mix(result.logits);
      };
    }
    if (this.card.states.length) {
      let state = this.zeroState();
      return async (ids) => {
        const result = await this.run(ids, state);
        state = result.state;
        return result.logits;
      };
    }
    let window = [];
    return async (ids) => {
      window = [...window, ...ids].slice(-this.card.seqLen);
      return this.logits(window);
    };
  }
}

/** The prompt's tokens that the vocabulary lacks (read as <unk>). */
export function unknownWords(prompt, card) {
  return [...new Set(tokenize(prompt, card.tokenizer).filter((t) => !card.index.has(t)))].sort();
}

/** Tokenize a prompt; refuse an empty or all-unknown one with the Python messages. */
export function promptToIds(prompt, card) {
  const tokens = tokenize(prompt, card.tokenizer);
  if (!tokens.length) throw new WordrnnError("the prompt is empty; give at least one word with --prompt");
  const ids = tokens.map((t) => card.index.get(t) ?? UNK_ID);
  if (ids.every((id) => id === UNK_ID) && !tokens.includes(UNK)) {
    throw new WordrnnError(`every word of the prompt (${tokens.join(" ")}) is unknown to this model and maps to ` +
      `${UNK}; use words from the training poems`);
  }
  return ids;
}

/** Yield nTokens new token ids: the prompt is fed once, then each new token (the last needs no logits). */
export async function* generateIds(model, promptIds, nTokens, settings) {
  const rng = new SplitMix64(settings.seed);
  const feed = model.newFeed();
  const history = [...promptIds]; // the repetition controls read the whole text, prompt included
  let logits = await feed(promptIds);
  for (let i = 0; i < nTokens; i++) {
    const token = nextToken(logits, settings, rng, history);
    history.push(token);
    yield token;
    if (i + 1 < nTokens) logits = await feed([token]);
  }
}

/**
 * Prompt in, verse out. onPiece(text, tokenId) receives each piece of text as it is written (the prompt's
 * pieces with tokenId null); returns {text, ids} with ids the generated token ids.
 */
export async function generateText(model, prompt, nTokens, settings, onPiece = () => {}) {
  const promptIds = promptToIds(prompt, model.card);
  const detok = new Detokenizer();
  const pieces = [];
  for (const id of promptIds) {
    pieces.push(detok.push(model.card.tokens[id]));
    onPiece(pieces[pieces.length - 1], null);
  }
  const ids = [];
  for await (const id of generateIds(model, promptIds, nTokens, settings)) {
    ids.push(id);
    pieces.push(detok.push(model.card.tokens[id]));
    await onPiece(pieces[pieces.length - 1], id);
  }
  return { text: pieces.join(""), ids };
}
