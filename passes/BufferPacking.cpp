//===- BufferPacking.cpp - offsets for buffers with known lifetimes --------===//

#include "hasten/Passes/BufferPacking.h"

#include <algorithm>

int64_t hasten::packBuffers(std::vector<PackedBuffer> &buffers, int64_t alignment) {
  std::vector<PackedBuffer *> order;
  for (PackedBuffer &b : buffers)
    order.push_back(&b);
  std::sort(order.begin(), order.end(), [](PackedBuffer *a, PackedBuffer *b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->start < b->start;
  });
  std::vector<PackedBuffer *> placed;
  int64_t arena = 0;
  for (PackedBuffer *b : order) {
    std::vector<std::pair<int64_t, int64_t>> taken;
    for (PackedBuffer *p : placed)
      if (p->start <= b->end && b->start <= p->end)
        taken.push_back({p->offset, p->offset + p->bytes});
    std::sort(taken.begin(), taken.end());
    int64_t offset = 0;
    for (auto [from, to] : taken) {
      if (offset + b->bytes <= from)
        break;
      offset = std::max(offset, (to + alignment - 1) / alignment * alignment);
    }
    b->offset = offset;
    arena = std::max(arena, offset + b->bytes);
    placed.push_back(b);
  }
  return arena;
}
