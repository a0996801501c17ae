//===- HastenTypes.cpp - hasten dialect types ------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace hasten;

//===----------------------------------------------------------------------===//
// KVCacheType
//===----------------------------------------------------------------------===//

// Syntax: `<layers = L, kv_heads = H, head_dim = D, capacity = C, T>` with an
// optional trailing `, paged<block_size = B>`.
Type KVCacheType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  int64_t layers = 0, kvHeads = 0, headDim = 0, capacity = 0, blockSize = 0;
  Type elementType;
  KVCacheLayout layout = KVCacheLayout::Contiguous;

  auto parseField = [&](StringRef name, int64_t &value) -> ParseResult {
    if (parser.parseKeyword(name) || parser.parseEqual() ||
        parser.parseInteger(value))
      return failure();
    return success();
  };
  if (parser.parseLess() || parseField("layers", layers) ||
      parser.parseComma() || parseField("kv_heads", kvHeads) ||
      parser.parseComma() || parseField("head_dim", headDim) ||
      parser.parseComma() || parseField("capacity", capacity) ||
      parser.parseComma() || parser.parseType(elementType))
    return {};
  if (succeeded(parser.parseOptionalComma())) {
    StringRef layoutName;
    SMLoc layoutLoc = parser.getCurrentLocation();
    if (parser.parseKeyword(&layoutName))
      return {};
    if (layoutName == "paged") {
      layout = KVCacheLayout::Paged;
      if (parser.parseLess() || parseField("block_size", blockSize) ||
          parser.parseGreater())
        return {};
    } else if (layoutName != "contiguous") {
      parser.emitError(layoutLoc)
          << "unknown KV cache layout '" << layoutName
          << "'; expected 'contiguous' or 'paged<block_size = N>'";
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return parser.getChecked<KVCacheType>(loc, parser.getContext(), layers,
                                        kvHeads, headDim, capacity,
                                        elementType, layout, blockSize);
}

void KVCacheType::print(AsmPrinter &printer) const {
  printer << "<layers = " << getNumLayers() << ", kv_heads = " << getNumKvHeads()
          << ", head_dim = " << getHeadDim() << ", capacity = " << getCapacity()
          << ", " << getElementType();
  if (isPaged())
    printer << ", paged<block_size = " << getBlockSize() << ">";
  printer << ">";
}

LogicalResult
KVCacheType::verify(function_ref<InFlightDiagnostic()> emitError,
                    int64_t numLayers, int64_t numKvHeads, int64_t headDim,
                    int64_t capacity, Type elementType, KVCacheLayout layout,
                    int64_t blockSize) {
  auto requirePositive = [&](StringRef name, int64_t value) -> LogicalResult {
    if (value > 0)
      return success();
    return emitError() << "KV cache " << name << " must be positive, got "
                       << value;
  };
  if (failed(requirePositive("layers", numLayers)) ||
      failed(requirePositive("kv_heads", numKvHeads)) ||
      failed(requirePositive("head_dim", headDim)) ||
      failed(requirePositive("capacity", capacity)))
    return failure();
  if (!isa<FloatType>(elementType))
    return emitError() << "KV cache element type must be a floating-point "
                          "type, got "
                       << elementType;
  if (layout == KVCacheLayout::Contiguous) {
    if (blockSize != 0)
      return emitError() << "a contiguous KV cache takes no block_size, got "
                         << blockSize;
    return success();
  }
  if (blockSize <= 0)
    return emitError() << "a paged KV cache needs a positive block_size, got "
                       << blockSize;
  if (capacity % blockSize != 0)
    return emitError() << "KV cache capacity (" << capacity
                       << ") must be a multiple of block_size (" << blockSize
                       << ")";
  return success();
}

int64_t KVCacheType::getElementBytes() const {
  return (getElementType().getIntOrFloatBitWidth() + 7) / 8;
}

int64_t KVCacheType::getBytesPerToken() const {
  // Keys and values, for every layer and kv head.
  return 2 * getNumLayers() * getNumKvHeads() * getHeadDim() *
         getElementBytes();
}

int64_t KVCacheType::getTotalBytes() const {
  return getBytesPerToken() * getCapacity();
}

int64_t KVCacheType::getNumBlocks() const {
  return isPaged() ? getCapacity() / getBlockSize() : 1;
}

//===----------------------------------------------------------------------===//
// AttentionTilingAttr
//===----------------------------------------------------------------------===//

LogicalResult hasten::AttentionTilingAttr::verify(
    function_ref<InFlightDiagnostic()> emitError, StringRef target, int64_t blockQ,
    int64_t tileQ, int64_t tileKv, int64_t kvSplits, bool skipMasked, bool diagonalMask,
    int64_t warps, StringRef mma, StringRef smemLayout, int64_t vectorLanes) {
  if (!llvm::is_contained({"cpu", "ascend", "sm_70", "sm_80", "sm_90"}, target))
    return emitError() << "unknown attention tiling target '" << target
                       << "' (expected cpu, ascend, sm_70, sm_80 or sm_90)";
  if (blockQ <= 0 || tileQ <= 0 || tileKv <= 0 || kvSplits <= 0)
    return emitError() << "block_q, tile_q, tile_kv and kv_splits must be positive";
  if (blockQ % tileQ != 0)
    return emitError() << "block_q (" << blockQ << ") must be a multiple of tile_q (" << tileQ
                       << ")";
  if (warps < 0 || vectorLanes < 0)
    return emitError() << "warps and vector_lanes must not be negative";
  if (diagonalMask && !skipMasked)
    return emitError() << "diagonal_mask needs skip_masked: a tile above the diagonal would "
                          "run unmasked";
  if (smemLayout != "row" && smemLayout != "nz" && !smemLayout.starts_with("padded<") &&
      !smemLayout.starts_with("swizzle<"))
    return emitError() << "unknown operand layout '" << smemLayout
                       << "' (expected row, padded<N>, swizzle<B> or nz)";
  (void)mma;
  return success();
}
