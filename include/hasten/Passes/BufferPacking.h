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

} // namespace hasten

#endif // HASTEN_PASSES_BUFFERPACKING_H
