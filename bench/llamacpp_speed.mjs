// llamacpp_speed.mjs: llama.cpp's prompt processing and generation speed on
// a GGUF file, through node-llama-cpp 3.21.1's prebuilt CPU libraries (the
// package in tests/llamacpp), for bench/bench_llamacpp.py.
//
//   node bench/llamacpp_speed.mjs MODEL.gguf PROMPT TOKENS REPEATS THREADS
//
// pp: PROMPT tokens evaluated in one batch into a cleared sequence; tg:
// TOKENS generated greedily after it, one evaluation each (node-llama-cpp's
// per-token call is included, as in any application that uses it). Medians
// after a warm-up; one JSON line.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "llamacpp", "package.json"));
const { getLlama, LlamaLogLevel } = await import(require.resolve("node-llama-cpp"));

const [modelPath, pArg, nArg, rArg, tArg] = process.argv.slice(2);
const P = Number(pArg), N = Number(nArg), R = Number(rArg), threads = Number(tArg);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: P + N + 8, batchSize: P, sequences: 1, threads,
  flashAttention: false });
const seq = context.getSequence();
const prompt = Array.from({ length: P }, (_, i) => (i * 37 + 11) % 256);
const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
const pp = [], tg = [];
for (let r = -1; r < R; r++) {
  await seq.clearHistory();
  const t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const t1 = performance.now();
  // generation starts from the prompt's last token, evaluated again at its position
  await seq.eraseContextTokenRanges([{ start: P - 1, end: P }]);
  let input = [[prompt[P - 1], { generateNext: { token: true, options: { temperature: 0 } } }]];
  const t2 = performance.now();
  for (let k = 0; k < N; k++) {
    const out = await seq.controlledEvaluate(input);
    const t = out[input.length - 1].next.token;
    input = [[t, { generateNext: { token: true, options: { temperature: 0 } } }]];
  }
  const t3 = performance.now();
  if (r >= 0) pp.push(P / ((t1 - t0) / 1e3)), tg.push(N / ((t3 - t2) / 1e3));
}
console.log(JSON.stringify({ runtime: "llama.cpp", threads, pp: med(pp), tg: med(tg), pp_min: Math.min(...pp),
  pp_max: Math.max(...pp), tg_min: Math.min(...tg), tg_max: Math.max(...tg) }));
