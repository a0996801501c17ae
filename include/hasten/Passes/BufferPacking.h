//===- BufferPacking.h - offsets for buffers with known lifetimes -*- C++ -*-===//
//
// The one packing algorithm behind the activation arena
// (hasten-pack-static-buffers) and the memory report: buffers with a size
// and a live interval get offsets in one arena such that buffers alive at
// the same time never overlap.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_BUFFERPACKING_H
#define HASTEN_PASSES_BUFFERPACKING_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cstdint>
#include <vector>

namespace hasten {

struct PackedBuffer {
  int64_t bytes;
  /// Live over [start, end] (positions in program order, inclusive).
  int64_t start, end;
  /// Set by packBuffers.
  int64_t offset = 0;
};

/// Assigns offsets (largest buffer first, each at the lowest `alignment`
/// aligned gap left by the overlapping buffers already placed) and returns
/// the arena size.
int64_t packBuffers(std::vector<PackedBuffer> &buffers, int64_t alignment = 64);

/// The activation arena hasten-pack-static-buffers builds for a bufferized
/// function, as an analysis: its candidates (top-level allocations of a
/// static identity-layout shape, freed only by top-level deallocations,
/// every use followed), their offsets, and the arena size. The pass
/// rewrites from it; the memory report reads it without rewriting.
struct StaticArena {
  llvm::SmallVector<mlir::memref::AllocOp> allocs;
  /// One per alloc, with its offset.
  std::vector<PackedBuffer> buffers;
  /// 0 when there are fewer than two candidates (no arena is built).
  int64_t bytes = 0;
};
StaticArena planStaticArena(mlir::func::FuncOp func, int64_t alignment = 64);

} // namespace hasten

#endif // HASTEN_PASSES_BUFFERPACKING_H
