// eval.mjs: llama.cpp's view of a GGUF file, through node-llama-cpp 3.21.1
// (its prebuilt CPU libraries, never a build). Two modes, each printing one
// JSON line:
//   node eval.mjs nll MODEL.gguf TEXT BLOCK   mean next-token loss over TEXT
//     in consecutive non-overlapping windows of BLOCK tokens (qat eval
//     --data's windows: every token but the first scored once), and the
//     tokens llama.cpp's tokenizer made of TEXT, and its most likely next
//     token at every scored position (top1, as qat eval --top1 writes it)
//   node eval.mjs greedy MODEL.gguf PROMPT N  N tokens of greedy generation
//   node eval.mjs doc MODEL.gguf TEXT BLOCK   the nll mode for a document of a
//     SentencePiece model: TEXT read as UTF-8 and tokenized with BOS first
//     (qat eval --data's stream), all its ids, and the log-probability of
//     each next token in the first window (lp)
//   node eval.mjs greedy-doc MODEL.gguf PROMPT N  greedy generation after
//     BOS + PROMPT, with an F32 KV cache (no rounding to split near-ties)
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { readFileSync } from "node:fs";

const [mode, modelPath, arg, nArg] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const n = Number(nArg);
// every probability, unchanged by sampling options
const all = { temperature: 1, topK: 0, topP: 1, minP: 0 };

if (mode === "nll" || mode === "doc") {
  const doc = mode === "doc";
  const text = readFileSync(arg, doc ? "utf8" : "latin1");
  const tokens = doc ? [model.tokens.bos, ...model.tokenize(text, false)] : model.tokenize(text, false);
  // an F32 KV cache: llama.cpp's default F16 one rounds every key and value;
  // room beyond the window: a context exactly full changes the last position
  const context = await model.createContext({ contextSize: 2 * n, batchSize: n, sequences: 1, threads: 2,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false });
  const seq = context.getSequence();
  let sum = 0, scored = 0, windows = 0;
  const top1 = [], lp = [];
  for (let s = 0; s + 1 < tokens.length; s += n) {
    const len = Math.min(n, tokens.length - 1 - s);
    await seq.clearHistory();
    const input = [];
    for (let i = 0; i < len; i++) input.push([tokens[s + i], { generateNext: { probabilities: true, options: all } }]);
    const out = await seq.controlledEvaluate(input);
    for (let i = 0; i < len; i++) {
      const probs = out[i].next.probabilities;
      const p = probs.get(tokens[s + i + 1]) ?? 0;
      sum += -Math.log(Math.max(p, 1e-45));
      if (s === 0) lp.push(Math.log(Math.max(p, 1e-45)));
      let best = -1, bp = -1; // the first largest, as qat takes it
      for (const [t, q] of probs) if (q > bp || (q === bp && t < best)) best = t, bp = q;
      top1.push(best);
      scored++;
    }
    windows++;
  }
  console.log(JSON.stringify({ nll: sum / scored, tokens: scored, windows, n_tokens: tokens.length,
                               ids: Array.from(doc ? tokens : tokens.slice(0, 64)), top1, ...(doc ? { lp } : {}) }));
} else if (mode === "greedy" || mode === "greedy-doc") {
  const doc = mode === "greedy-doc";
  const prompt = doc ? [model.tokens.bos, ...model.tokenize(arg, false)] : model.tokenize(arg, false);
  // prompt + N must stay within the trained context (learned positions)
  const kv = doc ? { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" } : {};
  const context = await model.createContext({ contextSize: doc ? 1024 : 2 * model.trainContextSize, sequences: 1,
    threads: 2, ...kv });
  const seq = context.getSequence();
  const made = [];
  let input = prompt.map((t, i) => (i + 1 < prompt.length ? t : [t, { generateNext: { token: true, options: { temperature: 0 } } }]));
  for (let k = 0; k < n; k++) {
    const out = await seq.controlledEvaluate(input);
    const t = out[input.length - 1].next.token;
    made.push(t);
    input = [[t, { generateNext: { token: true, options: { temperature: 0 } } }]];
  }
  console.log(JSON.stringify({ text: model.detokenize(made), ids: made }));
} else {
  console.error("usage: node eval.mjs nll|doc MODEL.gguf TEXT BLOCK | greedy|greedy-doc MODEL.gguf PROMPT N");
  process.exit(2);
}
