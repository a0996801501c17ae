// Times ONNX Runtime (onnxruntime-node, CPU) on one model and one input:
//   node ort_bench.js MODEL.onnx INPUT_NAME INPUT.npy THREADS REPEAT [OUT.bin]
// Prints "median_ms <value>" (after warm-up runs), and with OUT.bin writes
// the first output's raw float32 data for correctness checks.
const ort = require('onnxruntime-node');
const fs = require('fs');

function readNpy(path) {
  const buf = fs.readFileSync(path);
  const headerLen = buf.readUInt16LE(8);
  const header = buf.toString('latin1', 10, 10 + headerLen);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',')
      .map(s => s.trim()).filter(s => s.length).map(Number);
  const start = 10 + headerLen;
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + start,
                                                 buf.byteOffset + buf.length));
  return new ort.Tensor('float32', data, shape);
}

async function main() {
  const [model, inputName, inputPath, threads, repeat, outPath] = process.argv.slice(2);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all'});
  const feeds = {[inputName]: readNpy(inputPath)};
  for (let i = 0; i < 3; ++i) await session.run(feeds);
  const times = [];
  let result;
  for (let i = 0; i < Number(repeat); ++i) {
    const start = process.hrtime.bigint();
    result = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(`median_ms ${times[Math.floor(times.length / 2)]}`);
  if (outPath) {
    const first = result[session.outputNames[0]];
    fs.writeFileSync(outPath, Buffer.from(first.data.buffer));
  }
}
main().catch(e => { console.error(e.message); process.exit(1); });
