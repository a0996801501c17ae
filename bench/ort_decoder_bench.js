// Times ONNX Runtime (onnxruntime-node, CPU) driving an Optimum-style
// decoder with past/present, batch 1:
//   node ort_decoder_bench.js MODEL.onnx THREADS PREFILL_TOKENS DECODE_PAST REPEAT
// Prints "prefill_ms <median>" for PREFILL_TOKENS tokens on an empty past,
// and "decode_ms <median>" for one token after DECODE_PAST tokens (the past
// tensors come from a prefill of that many tokens), and "greedy <ids>": the
// argmax of the prefill's last logits, a cross-check with hasten.
const ort = require('onnxruntime-node');

function ids(n, offset) {
  const data = new BigInt64Array(n);
  for (let i = 0; i < n; ++i) data[i] = BigInt((i * 7 + offset) % 50000 + 1);
  return data;
}

async function main() {
  const [model, threads, prefillTokens, decodePast, repeat] = process.argv.slice(2);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all'});
  const pastNames = session.inputNames.filter(n => n.startsWith('past_key_values.'));
  // kv heads and head dim from the model's metadata-free way: run once.
  function feeds(tokens, past, pastLen) {
    const n = tokens.length;
    const f = {
      input_ids: new ort.Tensor('int64', tokens, [1, n]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(pastLen + n).fill(1n),
                                     [1, pastLen + n]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({length: n},
                                                                (_, i) => BigInt(pastLen + i)),
                                   [1, n]),
    };
    for (const name of pastNames) f[name] = past[name];
    return f;
  }
  // Empty pasts: [1, kv_heads, 0, head_dim]; read the dims from the
  // present of a one-token run on a one-token past.
  const probePast = {};
  const meta = session.inputMetadata || [];
  let kvHeads = 0, headDim = 0;
  for (const m of meta) {
    if (m.name === pastNames[0] && m.shape) { kvHeads = m.shape[1]; headDim = m.shape[3]; }
  }
  if (!kvHeads) throw new Error('cannot read the past shape from the model');
  for (const name of pastNames)
    probePast[name] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
  const median = a => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  async function time(f, n) {
    for (let i = 0; i < 2; ++i) await session.run(f);
    const times = [];
    let out;
    for (let i = 0; i < n; ++i) {
      const start = process.hrtime.bigint();
      out = await session.run(f);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    return [median(times), out];
  }
  const P = Number(prefillTokens);
  const [prefillMs, prefillOut] = await time(feeds(ids(P, 0), probePast, 0), Number(repeat));
  const logits = prefillOut.logits.data, vocab = prefillOut.logits.dims[2];
  let best = 0;
  for (let v = 1; v < vocab; ++v)
    if (logits[(P - 1) * vocab + v] > logits[(P - 1) * vocab + best]) best = v;
  console.log(`prefill_ms ${prefillMs}`);
  console.log(`greedy ${best}`);
  const D = Number(decodePast);
  const pastRun = await session.run(feeds(ids(D, 0), probePast, 0));
  const past = {};
  for (const name of pastNames) past[name] = pastRun[name.replace('past_key_values.', 'present.')];
  const [decodeMs] = await time(feeds(ids(1, 3), past, D), Math.max(3 * Number(repeat), 10));
  console.log(`decode_ms ${decodeMs}`);
}
main().catch(e => { console.error(e.message); process.exit(1); });
