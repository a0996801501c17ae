//===- PlanAttention.cpp - tile plans for hasten.attention per target ------===//
//
// A plan is a target decision that stays visible in IR: block and tile
// sizes from the target's memories, split-KV for one-query decode, the
// causal tile skipping and tiling-mask flags, and on GPUs the warps, the
// matrix instruction and a shared-memory operand layout free of bank
// conflicts for it.
//
//===----------------------------------------------------------------------===//

#include "AttentionTiling.h"

#include "hasten/Passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include "llvm/Support/raw_ostream.h"

#include <algorithm>

namespace hasten {
#define GEN_PASS_DEF_PLANATTENTION
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

FailureOr<AttentionTarget> hasten::getAttentionTarget(StringRef name, int64_t l1Bytes,
                                                      int64_t l2Bytes, int64_t vectorBits,
                                                      std::string &error) {
  AttentionTarget t;
  t.name = name.str();
  if (name == "cpu") {
    // Defaults: a current x86 server core (48 KiB L1d, 1 MiB L2 per core on
    // Zen 4/5; 2 MiB on Sapphire Rapids), 512-bit vectors. hasten-compile
    // passes what its --cpu target has.
    t.l1Bytes = l1Bytes ? l1Bytes : 48 << 10;
    t.l2Bytes = l2Bytes ? l2Bytes : 1 << 20;
    t.vectorBits = vectorBits ? vectorBits : 512;
  } else if (name == "ascend") {
    // An Ascend 910-class AI core: a 192 KiB unified buffer for the vector
    // unit's softmax, the cube unit's 16 x 16 x 16 fp16 fractal MMA.
    t.onChipBytes = 192 << 10;
    t.units = 24;
    t.mma = "cube16x16x16";
    t.mmaM = t.mmaN = t.mmaK = 16;
  } else if (name == "sm_70") {
    t.onChipBytes = 96 << 10;
    t.units = 80;
    t.warps = 4;
    t.mma = "m8n8k4";
    t.mmaM = 8, t.mmaN = 8, t.mmaK = 4;
  } else if (name == "sm_80") {
    t.onChipBytes = 164 << 10;
    t.units = 108;
    t.warps = 4;
    t.mma = "m16n8k16";
    t.mmaM = 16, t.mmaN = 8, t.mmaK = 16;
  } else if (name == "sm_90") {
    t.onChipBytes = 228 << 10;
    t.units = 132;
    t.warps = 8;
    t.mma = "wgmma.m64nNk16";
    t.mmaM = 64, t.mmaN = 128, t.mmaK = 16;
  } else {
    error = "unknown attention target '" + name.str() +
            "' (expected cpu, ascend, sm_70, sm_80 or sm_90)";
    return failure();
  }
  return t;
}

namespace {

int64_t floorPow2(int64_t v) {
  int64_t p = 1;
  while (p * 2 <= v)
    p *= 2;
  return p;
}

struct Dims {
  int64_t heads, qLen, headDim, valueDim;
};

Dims dimsOf(AttentionOp op) {
  auto q = op.getQuery().getType(), v = op.getValue().getType();
  // A dynamic head_dim is planned as 128, the largest common one.
  auto orDefault = [](int64_t d) { return ShapedType::isDynamic(d) ? 128 : d; };
  return {(int64_t)op.getNumHeads(), q.getDimSize(2), orDefault(q.getDimSize(3)),
          orDefault(v.getDimSize(3))};
}

/// The shared-memory layout that keeps a tensor-core operand load free of
/// bank conflicts for rows of `rowBytes`. Volta's m8n8k4 fragments and
/// sm_80's ldmatrix both read 16 bytes from each of 8 consecutive rows; the
/// 8 reads fall in 8 different 16-byte bank groups when consecutive rows
/// start an odd number of 16-byte chunks apart. Volta gets that by padding
/// each row by 8 fp16 elements when its length is an even number of chunks;
/// sm_80 and sm_90 instead XOR the chunk index with the row (within the
/// largest power-of-two row span up to 128 bytes), which costs no memory and
/// is what ldmatrix, cp.async and TMA expect.
std::string operandLayout(const AttentionTarget &t, int64_t rowBytes) {
  if (t.name == "ascend")
    return "nz";
  if (t.name == "sm_70") {
    if (rowBytes % 16 != 0 || (rowBytes / 16) % 2 == 1)
      return "row";
    return "padded<8>";
  }
  for (int64_t span : {128, 64, 32})
    if (rowBytes % span == 0)
      return "swizzle<" + std::to_string(span) + ">";
  return (rowBytes / 16) % 2 == 1 ? "row" : "padded<8>";
}

int64_t paddedRowBytes(StringRef layout, int64_t rowBytes) {
  if (layout.consume_front("padded<")) {
    int64_t elements = 0;
    layout.consumeInteger(10, elements);
    return rowBytes + elements * 2;
  }
  return rowBytes;
}

} // namespace

AttentionTilingAttr hasten::planAttentionTiling(AttentionOp op, const AttentionTarget &t) {
  MLIRContext *ctx = op.getContext();
  Dims d = dimsOf(op);
  bool decode = d.qLen == 1;
  int64_t blockQ, tileQ, tileKv, kvSplits = 1, lanes = 0;
  std::string layout = "row";

  if (t.name == "cpu") {
    lanes = t.vectorBits / 32;
    // K and V tiles (f32) fit the L1 together; at least one vector wide.
    tileKv = std::clamp<int64_t>(floorPow2(t.l1Bytes / (4 * (d.headDim + d.valueDim))), lanes,
                                 256);
    // The query block, its accumulator and a scores tile stay in half the
    // L2; 64 rows at most, so that a sequence still splits into enough
    // blocks for every thread.
    int64_t perRow = 4 * (d.headDim + d.valueDim + tileKv + 2);
    blockQ = std::clamp<int64_t>(floorPow2(t.l2Bytes / 2 / perRow), 1, 64);
    tileQ = blockQ;
    if (decode) {
      blockQ = tileQ = 1;
      // One query reuses no K or V row: tiles need not fit the L1. Long
      // ones put the four key streams of the one-query passes far apart
      // (measured faster than 256-key tiles, see TileAttention.cpp) and
      // spread the per-tile softmax steps over more keys; the scores tile
      // is still only 16 KiB.
      tileKv = 4096;
      // Split the keys so that about 16 (batch 1) head x split jobs exist.
      kvSplits = std::clamp<int64_t>((16 + d.heads - 1) / d.heads, 1, 16);
    }
  } else if (t.name == "ascend") {
    // FastAttention's two levels: an AI core takes a block of 4 query
    // tiles; a tile's f32 scores and fp16 probabilities (tile_q x tile_kv)
    // fit half the unified buffer, double-buffered against the cube unit.
    tileQ = 64;
    tileKv = std::clamp<int64_t>(floorPow2(t.onChipBytes / 2 / (tileQ * (4 + 2))), 16, 512);
    blockQ = 4 * tileQ;
    if (decode) {
      blockQ = tileQ = t.mmaM;
      kvSplits = std::clamp<int64_t>(t.units / d.heads, 1, 64);
    }
    layout = operandLayout(t, d.headDim * 2);
  } else {
    // GPUs: each warp (warpgroup on sm_90) owns tile_q query rows; K and V
    // tiles are double-buffered in shared memory next to the Q block.
    layout = operandLayout(t, d.headDim * 2);
    int64_t rowBytes = paddedRowBytes(layout, d.headDim * 2);
    int64_t vRowBytes = paddedRowBytes(layout, d.valueDim * 2);
    if (t.name == "sm_70") {
      blockQ = 64;
      tileKv = 64;
    } else if (t.name == "sm_80") {
      blockQ = 128;
      tileKv = d.headDim <= 64 ? 128 : 64;
    } else {
      blockQ = 128;
      tileKv = d.headDim <= 128 ? 128 : 64;
    }
    auto smem = [&] { return blockQ * rowBytes + 2 * tileKv * (rowBytes + vRowBytes); };
    while (smem() > t.onChipBytes && tileKv > 16)
      tileKv /= 2;
    while (smem() > t.onChipBytes && blockQ > t.mmaM)
      blockQ /= 2;
    int64_t rowGroups = t.name == "sm_90" ? t.warps / 4 : t.warps; // warpgroups on sm_90
    tileQ = std::max<int64_t>(blockQ / rowGroups, t.mmaM);
    blockQ = std::max(blockQ, tileQ);
    if (decode) {
      // The query heads of one key/value head share an MMA tile (padded).
      blockQ = tileQ = t.mmaM;
      kvSplits = std::clamp<int64_t>(t.units / d.heads, 1, 64);
    }
  }
  return AttentionTilingAttr::get(ctx, t.name, blockQ, tileQ, tileKv, kvSplits,
                                  /*skip_masked=*/true, /*diagonal_mask=*/true, t.warps, t.mma,
                                  layout, lanes);
}

int64_t hasten::attentionWorkingSetBytes(AttentionOp op, AttentionTilingAttr tiling) {
  Dims d = dimsOf(op);
  bool accelerator = tiling.getTarget() != "cpu";
  int64_t operand = accelerator ? 2 : 4; // fp16/bf16 tensor-core operands
  int64_t rowBytes = paddedRowBytes(tiling.getSmemLayout(), d.headDim * operand);
  int64_t vRowBytes = paddedRowBytes(tiling.getSmemLayout(), d.valueDim * operand);
  int64_t kvBuffers = accelerator ? 2 : 1; // double-buffered on accelerators
  return tiling.getBlockQ() * rowBytes + kvBuffers * tiling.getTileKv() * (rowBytes + vRowBytes) +
         4 * (tiling.getTileQ() * tiling.getTileKv() + 2 * tiling.getBlockQ() +
              tiling.getBlockQ() * d.valueDim);
}

namespace {

std::string describe(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << t;
  return s;
}

struct PlanAttentionPass : public hasten::impl::PlanAttentionBase<PlanAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    std::string error;
    FailureOr<AttentionTarget> t =
        getAttentionTarget(target, l1Bytes, l2Bytes, vectorBits, error);
    if (failed(t)) {
      getOperation()->emitError(error);
      return signalPassFailure();
    }
    getOperation()->walk([&](AttentionOp op) {
      if (!op.getTiling() || replace)
        op.setTilingAttr(planAttentionTiling(op, *t));
      if (!printPlan)
        return;
      auto fn = op->getParentOfType<FunctionOpInterface>();
      llvm::raw_ostream &os = llvm::outs();
      os << "attention " << (fn ? fn.getName() : StringRef("?")) << " at " << op.getLoc()
         << "\n  q " << describe(op.getQuery().getType()) << ", k "
         << describe(op.getKey().getType()) << ", heads " << op.getNumHeads() << "/"
         << op.getNumKvHeads() << (op.getCausal() ? ", causal" : "")
         << (op.getMask() ? ", mask " + describe(op.getMask().getType()) : std::string())
         << "\n  tiling " << op.getTilingAttr()
         << "\n  on-chip working set per block: " << attentionWorkingSetBytes(op, op.getTilingAttr())
         << " bytes, independent of the sequence lengths; scores exist only as "
         << op.getTilingAttr().getTileQ() << "x" << op.getTilingAttr().getTileKv()
         << " tiles\n";
    });
  }
};

} // namespace
