//===- MatmulToRuntimeCalls.cpp - matmuls through the runtime's oneDNN -----===//
//
// Generated loops do not compete with a packed GEMM microkernel, so f32
// matmuls on buffers become calls into the runtime, which runs them with
// oneDNN and prepacks constant weights once.
//
//===----------------------------------------------------------------------===//

#include "MatmulOperands.h"
#include "RuntimeCalls.h"
#include "hasten/KernelAbi.h"
#include "hasten/WeightLayout.h"
#include "hasten/Passes/Passes.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/Threading.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <cstring>
#include <map>
#include <tuple>

namespace hasten {
#define GEN_PASS_DEF_MATMULTORUNTIMECALLS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

using namespace hasten::abi;
using hasten::anyStridedMemRef;
using hasten::copyKey;
using hasten::isConstantWeight;
using hasten::narrowedGlobalFor;
using hasten::readF32Values;
using hasten::viewThroughConstantTranspose;
using hasten::zeroFillBefore;

/// B of a matmul as a constant global read directly or through one
/// transpose: the global and whether it is transposed.
struct WeightSource {
  memref::GlobalOp global;
  bool transposed = false;
};

std::optional<WeightSource> weightSourceOf(Value b, SymbolTable &symbols) {
  Operation *def = b.getDefiningOp();
  WeightSource source;
  if (auto transpose = dyn_cast_or_null<memref::TransposeOp>(def)) {
    if (transpose.getPermutation() !=
        AffineMap::getPermutationMap(ArrayRef<unsigned>{1, 0}, b.getContext()))
      return std::nullopt;
    source.transposed = true;
    def = transpose.getIn().getDefiningOp();
  }
  auto get = dyn_cast_or_null<memref::GetGlobalOp>(def);
  if (!get)
    return std::nullopt;
  source.global = symbols.lookup<memref::GlobalOp>(get.getName());
  if (!source.global || !source.global.getConstant() ||
      !source.global.getType().getElementType().isF32() ||
      !source.global.getType().getLayout().isIdentity() || source.global.getType().getRank() != 2)
    return std::nullopt;
  return source;
}

/// 64-byte aligned storage: packed weights are handed to their globals'
/// resource blobs as they are, which needs the alignment the globals
/// declare (a copy of each, hundreds of megabytes in all, took a tenth of a
/// 124M decoder's packing).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U> &) {}
  T *allocate(size_t n) {
    return static_cast<T *>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T *p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  bool operator==(const CacheLineAllocator &) const { return true; }
  bool operator!=(const CacheLineAllocator &) const { return false; }
};
using PackedBytes = std::vector<uint8_t, CacheLineAllocator<uint8_t>>;

/// A byte global holding a packed weight (next to `from`), marked with its
/// format and logical K x N for the manifest.
memref::GlobalOp createPackedGlobal(memref::GlobalOp from, StringRef name, StringRef key,
                                   PackedBytes &&bytes,
                                   hasten::abi::WeightFormat format, int64_t k, int64_t n,
                                   SymbolTable &symbols) {
  MLIRContext *ctx = from.getContext();
  Type i8 = IntegerType::get(ctx, 8);
  int64_t size = (int64_t)bytes.size();
  auto *owned = new PackedBytes(std::move(bytes)); // the blob's from now on
  AsmResourceBlob blob(
      ArrayRef<char>(reinterpret_cast<const char *>(owned->data()), owned->size()), 64,
      [owned](void *, size_t, size_t) { delete owned; }, /*dataIsMutable=*/false);
  auto attr = DenseResourceElementsAttr::get(RankedTensorType::get({size}, i8), key,
                                             std::move(blob));
  OpBuilder b(from);
  auto packed = memref::GlobalOp::create(b, from.getLoc(), name, b.getStringAttr("private"),
                                         MemRefType::get({size}, i8), attr, /*constant=*/true,
                                         b.getI64IntegerAttr(64));
  packed->setAttr(hasten::HastenDialect::kWeightFormatAttrName,
                  b.getStringAttr(hasten::abi::weightFormatName(format)));
  packed->setAttr(hasten::HastenDialect::kWeightDimsAttrName, b.getDenseI64ArrayAttr({k, n}));
  symbols.insert(packed);
  return packed;
}

std::string packedName(WeightSource source, hasten::abi::WeightFormat format) {
  std::string name = (source.global.getSymName() + (source.transposed ? "_t_" : "_") +
                      hasten::abi::weightFormatName(format))
                         .str();
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

/// A weight's values and its bytes in `format`, packed strip range by strip
/// range (packStrips), from several threads at once: preparing reads
/// attributes only, so that the weights of a module, and the strips of a
/// large one (an LM head is a third of GPT-2's weights), pack in parallel.
struct WeightPacking {
  const float *blob = nullptr; // the global's raw f32 values, when it holds them
  std::vector<float> copy;      // the values otherwise
  int64_t cols = 0;
  bool transposed = false;
  hasten::abi::StripLayout layout;
  PackedBytes bytes; // zeros, then the packed strips

  static std::optional<WeightPacking> prepare(WeightSource source,
                                              hasten::abi::WeightFormat format) {
    WeightPacking p;
    auto resource = dyn_cast<DenseResourceElementsAttr>(*source.global.getInitialValue());
    AsmResourceBlob *raw = resource ? resource.getRawHandle().getBlob() : nullptr;
    if (raw && (int64_t)raw->getData().size() ==
                   source.global.getType().getNumElements() * (int64_t)sizeof(float)) {
      p.blob = reinterpret_cast<const float *>(raw->getData().data()); // no copy of 100s of MB
    } else {
      std::optional<std::vector<float>> values = readF32Values(source.global);
      if (!values)
        return std::nullopt;
      p.copy = std::move(*values);
    }
    ArrayRef<int64_t> shape = source.global.getType().getShape();
    int64_t rows = shape[0];
    p.cols = shape[1];
    p.transposed = source.transposed;
    int64_t k = p.transposed ? p.cols : rows, n = p.transposed ? rows : p.cols;
    p.layout = hasten::abi::StripLayout::of(format, k, n);
    p.bytes.assign(p.layout.totalBytes, 0);
    return p;
  }

  void packStrips(int64_t first, int64_t last) {
    const float *values = blob ? blob : copy.data();
    int64_t stride = cols;
    if (transposed)
      hasten::abi::packWeightStrips(
          layout, [&](int64_t r, int64_t c) { return values[c * stride + r]; }, bytes.data(),
          first, last);
    else
      hasten::abi::packWeightStrips(
          layout, [&](int64_t r, int64_t c) { return values[r * stride + c]; }, bytes.data(),
          first, last);
  }
};

/// The weight's bytes in `format`, packed on this thread.
std::optional<PackedBytes> packBytes(WeightSource source, hasten::abi::WeightFormat format) {
  std::optional<WeightPacking> packing = WeightPacking::prepare(source, format);
  if (!packing)
    return std::nullopt;
  packing->packStrips(0, packing->layout.strips);
  return std::move(packing->bytes);
}

/// The weight packed in `format` (KernelAbi's strips, WeightLayout.h) as a
/// byte global, created once per weight, orientation and format, marked
/// with the format and the logical K x N shape for the manifest; its bytes
/// from `prepacked` when they were packed ahead.
memref::GlobalOp packedGlobalFor(WeightSource source, hasten::abi::WeightFormat format,
                                 SymbolTable &symbols,
                                 std::map<std::string, PackedBytes> &prepacked) {
  std::string name = packedName(source, format);
  if (auto existing = symbols.lookup<memref::GlobalOp>(name))
    return existing;
  PackedBytes bytes;
  if (auto it = prepacked.find(name); it != prepacked.end() && !it->second.empty()) {
    bytes = std::move(it->second);
  } else {
    std::optional<PackedBytes> packed = packBytes(source, format);
    if (!packed)
      return nullptr;
    bytes = std::move(*packed);
  }
  ArrayRef<int64_t> shape = source.global.getType().getShape();
  int64_t k = source.transposed ? shape[1] : shape[0], n = source.transposed ? shape[0] : shape[1];
  return createPackedGlobal(source.global, name,
                            copyKey(source.global, hasten::abi::weightFormatName(format)),
                            std::move(bytes), format, k, n, symbols);
}

/// The constant global a memref reads, through expand/collapse views.
memref::GlobalOp constantGlobalOf(Value value, SymbolTable &symbols) {
  while (Operation *def = value.getDefiningOp()) {
    if (auto get = dyn_cast<memref::GetGlobalOp>(def)) {
      auto global = symbols.lookup<memref::GlobalOp>(get.getName());
      return global && global.getConstant() && global.getInitialValue() ? global : nullptr;
    }
    if (!isa<memref::ExpandShapeOp, memref::CollapseShapeOp>(def))
      return nullptr;
    value = def->getOperand(0);
  }
  return nullptr;
}

/// The elements of a constant global as raw bytes of their type.
std::optional<std::vector<char>> globalBytes(memref::GlobalOp global) {
  Attribute initial = *global.getInitialValue();
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(initial)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    return std::vector<char>(blob->getData().begin(), blob->getData().end());
  }
  auto dense = dyn_cast<DenseIntOrFPElementsAttr>(initial);
  if (!dense || dense.getElementType().getIntOrFloatBitWidth() % 8)
    return std::nullopt;
  ArrayRef<char> raw = dense.getRawData();
  std::vector<char> bytes;
  for (int64_t i = 0, n = dense.isSplat() ? dense.getNumElements() : 1; i < n; ++i)
    bytes.insert(bytes.end(), raw.begin(), raw.end());
  return bytes;
}

/// A weight that arrives quantized: B written, just before the matmul, by
/// the dequantization a quantized model's weight imports to,
///   (itofp(q) [- itofp(zp)]) * scale
/// of a constant integer q with constant scales and zero points, either
///   - [K, N] with one scale (and zero point) per column or for the tensor
///     (ONNX's DequantizeLinear of an int8/uint8 initializer): the int8
///     formats; or
///   - [K / G, G, N] with one per block of G = 32, 64 or 128 rows and
///     column, read as [K, N] through a collapse (and a slice of the first
///     K rows) (ONNX Runtime's MatMulNBits, whose q and zp are 4-bit): the
///     int4 formats.
/// Its values, scales and zero points as given, the format they fit, and the
/// ops that computed B, which go with it.
struct QuantizedWeight {
  memref::GlobalOp values;
  hasten::abi::WeightFormat format;
  /// Rows per scale (0: one per column).
  int64_t group = 0;
  /// Per group and column: scales, and zero points as stored (q's offset in
  /// the stored bytes included). `zeroPoints` is empty for a symmetric one.
  std::vector<float> scales;
  std::vector<uint8_t> zeroPoints;
  bool isUnsigned = false;
  /// What the stored values add to q.
  int64_t shift = 0;
  linalg::GenericOp dequantize;
  memref::AllocOp buffer;
  /// The collapse and slice between the buffer and B, B's last.
  SmallVector<Operation *> views;
};

/// A constant's elements as int64 (i8 signed or unsigned), or none.
std::optional<std::vector<int64_t>> integerElements(memref::GlobalOp global, bool isUnsigned) {
  if (!global || !global.getType().getElementType().isInteger(8))
    return std::nullopt;
  std::optional<std::vector<char>> bytes = globalBytes(global);
  if (!bytes || int64_t(bytes->size()) != global.getType().getNumElements())
    return std::nullopt;
  std::vector<int64_t> values(bytes->size());
  for (size_t i = 0; i < bytes->size(); ++i)
    values[i] = isUnsigned ? int64_t(uint8_t((*bytes)[i])) : int64_t(int8_t((*bytes)[i]));
  return values;
}

std::optional<QuantizedWeight> quantizedWeightOf(linalg::LinalgOp matmul, SymbolTable &symbols) {
  using hasten::abi::WeightFormat;
  Value b = matmul->getOperand(1);
  auto type = cast<MemRefType>(b.getType());
  if (type.getRank() != 2 || !type.hasStaticShape())
    return std::nullopt;
  int64_t k = type.getDimSize(0), n = type.getDimSize(1);
  QuantizedWeight weight;
  // Through a slice of the first rows and a collapse of [K / G, G, N].
  Value source = b;
  if (auto slice = source.getDefiningOp<memref::SubViewOp>()) {
    auto sourceType = cast<MemRefType>(slice.getSource().getType());
    if (!slice->hasOneUse() || !llvm::all_of(slice.getStaticOffsets(), [](int64_t o) { return o == 0; }) ||
        !llvm::all_of(slice.getStaticStrides(), [](int64_t s) { return s == 1; }) ||
        sourceType.getRank() != 2 || sourceType.getDimSize(1) != n)
      return std::nullopt;
    weight.views.push_back(slice);
    source = slice.getSource();
  }
  if (auto collapse = source.getDefiningOp<memref::CollapseShapeOp>()) {
    if (!collapse->hasOneUse() || collapse.getSrcType().getRank() != 3 ||
        collapse.getReassociationIndices().size() != 2 ||
        collapse.getReassociationIndices()[0].size() != 2)
      return std::nullopt;
    weight.views.push_back(collapse);
    source = collapse.getSrc();
  }
  if (weight.views.size() == 1 && isa<memref::SubViewOp>(weight.views[0]))
    return std::nullopt; // a slice of a [K, N] weight: not a form the importer writes
  std::reverse(weight.views.begin(), weight.views.end());
  auto alloc = source.getDefiningOp<memref::AllocOp>();
  auto bufferType = cast<MemRefType>(source.getType());
  if (!alloc || !bufferType.hasStaticShape())
    return std::nullopt;
  bool blocked = bufferType.getRank() == 3;
  weight.buffer = alloc;
  Operation *reader = weight.views.empty() ? matmul.getOperation() : weight.views.front();
  for (Operation *user : alloc->getUsers()) {
    if (user == reader || isa<memref::DeallocOp>(user))
      continue;
    auto generic = dyn_cast<linalg::GenericOp>(user);
    if (!generic || weight.dequantize || generic.getNumDpsInits() != 1 ||
        generic.getDpsInits()[0] != source || generic->getBlock() != matmul->getBlock() ||
        !generic->isBeforeInBlock(matmul))
      return std::nullopt;
    weight.dequantize = generic;
  }
  linalg::GenericOp g = weight.dequantize;
  int64_t rank = bufferType.getRank();
  if (!g || g.getNumParallelLoops() != rank || g.getNumLoops() != rank ||
      g.getNumDpsInputs() > 3 ||
      !g.getMatchingIndexingMap(g.getDpsInitOperand(0)).isIdentity() ||
      !g.getMatchingIndexingMap(g.getDpsInputOperand(0)).isIdentity())
    return std::nullopt;
  int64_t rows = blocked ? bufferType.getDimSize(0) * bufferType.getDimSize(1) : k;
  weight.group = blocked ? bufferType.getDimSize(1) : 0;
  if (blocked && (bufferType.getDimSize(2) != n || rows < k || rows - k >= weight.group ||
                  (weight.group != 32 && weight.group != 64 && weight.group != 128)))
    return std::nullopt;
  int64_t groups = blocked ? bufferType.getDimSize(0) : 1;

  // The body: (itofp(q) [- itofp(zp)]) times the scale, an input or (one
  // scale for the tensor, folded) a constant.
  Block &body = g.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto mul = yield.getValues()[0].getDefiningOp<arith::MulFOp>();
  if (!mul)
    return std::nullopt;
  auto isScale = [&](Value v) {
    if (g.getNumDpsInputs() >= 2)
      return v == body.getArgument(1);
    auto constant = v.getDefiningOp<arith::ConstantOp>();
    return constant && isa<FloatAttr>(constant.getValue()) &&
           !g->isAncestor(constant.getOperation());
  };
  Value scaleValue = isScale(mul.getLhs()) ? mul.getLhs() : mul.getRhs();
  Value product = scaleValue == mul.getLhs() ? mul.getRhs() : mul.getLhs();
  if (!isScale(scaleValue) || !scaleValue.getType().isF32())
    return std::nullopt;
  // itofp(argument), and whether it is unsigned.
  auto widened = [&](Value v, unsigned argument) -> std::optional<bool> {
    if (auto s = v.getDefiningOp<arith::SIToFPOp>(); s && s.getIn() == body.getArgument(argument))
      return false;
    if (auto u = v.getDefiningOp<arith::UIToFPOp>(); u && u.getIn() == body.getArgument(argument))
      return true;
    return std::nullopt;
  };
  std::optional<bool> zeroUnsigned;
  if (auto sub = product.getDefiningOp<arith::SubFOp>()) {
    zeroUnsigned = g.getNumDpsInputs() == 3 ? widened(sub.getRhs(), 2) : std::nullopt;
    if (!zeroUnsigned)
      return std::nullopt;
    product = sub.getLhs();
  } else if (g.getNumDpsInputs() == 3) {
    return std::nullopt;
  }
  std::optional<bool> valuesUnsigned = widened(product, 0);
  if (!valuesUnsigned || (zeroUnsigned && *zeroUnsigned != *valuesUnsigned))
    return std::nullopt;
  weight.isUnsigned = *valuesUnsigned;

  // A parameter's map: per column ((0, d1) or (d1)) or per tensor (all 0)
  // for [K, N]; per block and column (d0, 0, d2) for [K / G, G, N]. Its
  // elements are then indexed [group][column] (or [column], or [0]).
  auto perColumn = [&](OpOperand *operand) -> std::optional<bool> {
    AffineMap map = g.getMatchingIndexingMap(operand);
    auto isZero = [](AffineExpr e) {
      auto c = dyn_cast<AffineConstantExpr>(e);
      return c && c.getValue() == 0;
    };
    MLIRContext *context = map.getContext();
    if (blocked) {
      bool ok = map.getNumResults() == 3 && map.getResult(0) == getAffineDimExpr(0, context) &&
                isZero(map.getResult(1)) && map.getResult(2) == getAffineDimExpr(2, context);
      return ok ? std::optional<bool>(true) : std::nullopt;
    }
    if (map.getNumResults() >= 1 && map.getResults().back() == getAffineDimExpr(1, context) &&
        llvm::all_of(map.getResults().drop_back(), isZero))
      return true;
    if (llvm::all_of(map.getResults(), isZero))
      return false;
    return std::nullopt;
  };
  auto parameterIndex = [&](bool column, int64_t group, int64_t c) {
    return column ? group * n + c : 0;
  };
  weight.scales.resize(size_t(groups * n));
  if (g.getNumDpsInputs() == 1) {
    if (blocked)
      return std::nullopt;
    float scale = cast<FloatAttr>(scaleValue.getDefiningOp<arith::ConstantOp>().getValue())
                      .getValueAsDouble();
    std::fill(weight.scales.begin(), weight.scales.end(), scale);
  } else {
    memref::GlobalOp scaleGlobal = constantGlobalOf(g.getDpsInputs()[1], symbols);
    std::optional<bool> column = perColumn(g.getDpsInputOperand(1));
    if (!scaleGlobal || !column || !scaleGlobal.getType().getElementType().isF32() ||
        scaleGlobal.getType().getNumElements() != (*column ? groups * n : 1))
      return std::nullopt;
    std::optional<std::vector<char>> scaleBytes = globalBytes(scaleGlobal);
    if (!scaleBytes || scaleBytes->size() != size_t(*column ? groups * n : 1) * 4)
      return std::nullopt;
    for (int64_t group = 0; group < groups; ++group)
      for (int64_t c = 0; c < n; ++c)
        std::memcpy(&weight.scales[group * n + c],
                    scaleBytes->data() + parameterIndex(*column, group, c) * 4, 4);
  }
  std::vector<int64_t> zeros(size_t(groups * n), 0);
  if (g.getNumDpsInputs() == 3) {
    std::optional<bool> column = perColumn(g.getDpsInputOperand(2));
    std::optional<std::vector<int64_t>> given =
        integerElements(constantGlobalOf(g.getDpsInputs()[2], symbols), weight.isUnsigned);
    if (!column || !given || int64_t(given->size()) != (*column ? groups * n : 1))
      return std::nullopt;
    for (int64_t group = 0; group < groups; ++group)
      for (int64_t c = 0; c < n; ++c)
        zeros[group * n + c] = (*given)[parameterIndex(*column, group, c)];
  }
  weight.values = constantGlobalOf(g.getDpsInputs()[0], symbols);
  std::optional<std::vector<int64_t>> q = integerElements(weight.values, weight.isUnsigned);
  if (!q || int64_t(q->size()) != rows * n)
    return std::nullopt;
  // The format stores q + shift, in a byte (int8) or a nibble (int4), and
  // subtracts a fixed 128 (8) or, with zero points, zp + shift: the same
  // q - zp. Symmetric when one shift puts every zero point at the fixed
  // offset (a signed q with zero point 0: shift 128); else the shift that
  // fits q and zp in range (0 for an unsigned one).
  int64_t highest = blocked ? 15 : 255, fixed = blocked ? 8 : 128;
  auto [qLow, qHigh] = std::minmax_element(q->begin(), q->end());
  auto [zLow, zHigh] = std::minmax_element(zeros.begin(), zeros.end());
  int64_t low = std::min(*qLow, *zLow), high = std::max(*qHigh, *zHigh);
  bool symmetric = *zLow == *zHigh && *qLow + fixed - *zLow >= 0 && *qHigh + fixed - *zLow <= highest;
  if (symmetric) {
    weight.shift = fixed - *zLow;
  } else {
    if (high - low > highest)
      return std::nullopt;
    weight.shift = low >= 0 && high <= highest ? 0 : -low;
    weight.zeroPoints.resize(zeros.size());
    for (size_t i = 0; i < zeros.size(); ++i)
      weight.zeroPoints[i] = uint8_t(zeros[i] + weight.shift);
  }
  weight.format = blocked ? hasten::abi::int4Format(weight.group, !symmetric)
                          : symmetric ? WeightFormat::Int8
                                      : WeightFormat::Int8Zp;
  return weight;
}

/// With --weights=bf16: B as a view of a bf16 copy of its constant weight
/// (through the same transpose, if any), so the module stores the weight in
/// bf16 and the kernel reads it without converting. Null when B is not a
/// plain (or transposed) constant global.
Value bf16WeightFor(IRRewriter &rewriter, Value b, SymbolTable &symbols) {
  Operation *def = b.getDefiningOp();
  std::optional<AffineMap> permutation;
  if (auto transpose = dyn_cast_or_null<memref::TransposeOp>(def)) {
    permutation = transpose.getPermutation();
    def = transpose.getIn().getDefiningOp();
  }
  auto get = dyn_cast_or_null<memref::GetGlobalOp>(def);
  if (!get)
    return nullptr;
  auto global = symbols.lookup<memref::GlobalOp>(get.getName());
  if (!global || !global.getConstant() || !global.getType().getElementType().isF32() ||
      !global.getType().getLayout().isIdentity())
    return nullptr;
  memref::GlobalOp copy = narrowedGlobalFor(global, BFloat16Type::get(global.getContext()), symbols);
  if (!copy)
    return nullptr;
  Value value = memref::GetGlobalOp::create(rewriter, get.getLoc(), copy.getType(),
                                            copy.getSymName());
  if (permutation)
    value = memref::TransposeOp::create(rewriter, get.getLoc(), value,
                                        AffineMapAttr::get(*permutation));
  return value;
}

struct MatmulToRuntimeCallsPass
    : public hasten::impl::MatmulToRuntimeCallsBase<MatmulToRuntimeCallsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    if (weights != "f32" && weights != "bf16" && weights != "int8" && weights != "int4") {
      module.emitError("weights must be f32, bf16, int8 or int4, got '") << weights << "'";
      return signalPassFailure();
    }
    if (weightLayout != "plain" && weightLayout != "strips") {
      module.emitError("weight-layout must be plain or strips, got '") << weightLayout << "'";
      return signalPassFailure();
    }
    if (int4Group != 32 && int4Group != 64 && int4Group != 128) {
      module.emitError("int4-group must be 32, 64 or 128, got ") << static_cast<int64_t>(int4Group);
      return signalPassFailure();
    }
    rewriteQuantizedMatmuls(module);
    SmallVector<linalg::LinalgOp> matmuls;
    module.walk([&](linalg::LinalgOp op) {
      if (!isa<linalg::MatmulOp, linalg::BatchMatmulOp>(op) || !op.hasPureBufferSemantics())
        return;
      // Plain (untransposed, no broadcast) forms on f32 only.
      if (auto matmul = dyn_cast<linalg::MatmulOp>(op.getOperation()))
        if (matmul.hasUserDefinedMaps())
          return;
      if (auto batch = dyn_cast<linalg::BatchMatmulOp>(op.getOperation()))
        if (batch.hasUserDefinedMaps())
          return;
      for (Value operand : op->getOperands())
        if (!cast<MemRefType>(operand.getType()).getElementType().isF32())
          return;
      matmuls.push_back(op);
    });
    if (matmuls.empty())
      return;

    IRRewriter rewriter(ctx);
    SymbolTable symbols(module);
    for (linalg::LinalgOp op : matmuls)
      viewThroughConstantTranspose(rewriter, op);
    // Every weight to pack, packed on the context's threads (most of this
    // pass's time on a large model).
    std::map<std::string, PackedBytes> prepacked;
    std::vector<std::tuple<std::string, WeightSource, hasten::abi::WeightFormat>> tasks;
    for (linalg::LinalgOp op : matmuls) {
      if (isa<linalg::BatchMatmulOp>(op.getOperation()) || !isConstantWeight(op->getOperand(1)))
        continue;
      std::optional<WeightSource> source = weightSourceOf(op->getOperand(1), symbols);
      std::optional<hasten::abi::WeightFormat> format =
          source ? formatFor(*source) : std::nullopt;
      if (!format)
        continue;
      std::string name = packedName(*source, *format);
      if (prepacked.emplace(name, PackedBytes()).second)
        tasks.emplace_back(name, *source, *format);
    }
    // In pieces of 16 strips (1024 columns).
    constexpr int64_t kStripsPerPiece = 16;
    std::vector<std::optional<WeightPacking>> packings(tasks.size());
    std::vector<std::tuple<size_t, int64_t, int64_t>> pieces;
    for (size_t i = 0; i < tasks.size(); ++i) {
      packings[i] = WeightPacking::prepare(std::get<1>(tasks[i]), std::get<2>(tasks[i]));
      if (!packings[i])
        continue;
      int64_t strips = packings[i]->layout.strips;
      for (int64_t first = 0; first < strips; first += kStripsPerPiece)
        pieces.emplace_back(i, first, std::min(strips, first + kStripsPerPiece));
    }
    mlir::parallelFor(ctx, 0, pieces.size(), [&](size_t p) {
      auto [i, first, last] = pieces[p];
      packings[i]->packStrips(first, last);
    });
    for (size_t i = 0; i < tasks.size(); ++i)
      if (packings[i])
        prepacked[std::get<0>(tasks[i])] = std::move(packings[i]->bytes);

    for (linalg::LinalgOp op : matmuls) {
      bool batched = isa<linalg::BatchMatmulOp>(op.getOperation());
      int64_t rank = batched ? 3 : 2;
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      int32_t flags = 0;
      if (isConstantWeight(op->getOperand(1)))
        flags |= kConstantWeights;
      if (weights == "bf16")
        flags |= kBf16;
      if (linalg::FillOp fill = zeroFillBefore(op)) {
        flags |= kOverwrite;
        rewriter.eraseOp(fill);
      }
      Value oldWeight = op->getOperand(1);
      // A weight that arrives quantized runs on the int8 kernels as given,
      // whatever --weights says.
      std::optional<QuantizedWeight> quantized =
          batched ? std::nullopt : quantizedWeightOf(op, symbols);
      Value packed = quantized ? quantizedWeightFor(rewriter, op, *quantized, symbols, flags)
                     : batched ? Value()
                               : packedWeightFor(rewriter, op, symbols, flags, prepacked);
      Value bf16Weight = !packed && weights == "bf16" && (flags & kConstantWeights)
                             ? bf16WeightFor(rewriter, oldWeight, symbols)
                             : Value();
      // The kernels take (A, B, C, flags) as strided memrefs; B is bf16 for
      // the *_bf16w kernels and the packed bytes for *_packed.
      Type i8 = IntegerType::get(ctx, 8), bf16 = BFloat16Type::get(ctx);
      Type weightType = packed ? anyStridedMemRef(ctx, 1, i8)
                               : anyStridedMemRef(ctx, rank, bf16Weight ? bf16 : Type());
      StringRef kernel = packed       ? "hasten_rt_matmul_packed"
                         : bf16Weight ? (batched ? "hasten_rt_batch_matmul_bf16w"
                                                 : "hasten_rt_matmul_bf16w")
                                      : (batched ? "hasten_rt_batch_matmul_f32"
                                                 : "hasten_rt_matmul_f32");
      Type m = anyStridedMemRef(ctx, rank);
      func::FuncOp callee = hasten::declareRuntimeFunction(
          module, kernel, {m, weightType, m, IntegerType::get(ctx, 32)});
      Value weight = packed ? packed : bf16Weight ? bf16Weight : oldWeight;
      SmallVector<Value> args = {
          memref::CastOp::create(rewriter, loc, m, op->getOperand(0)),
          memref::CastOp::create(rewriter, loc, weightType, weight),
          memref::CastOp::create(rewriter, loc, m, op->getOperand(2)),
          arith::ConstantIntOp::create(rewriter, loc, flags, 32)};
      func::CallOp::create(rewriter, loc, callee, args);
      rewriter.eraseOp(op);
      if (quantized) {
        // The dequantized copy and what fed it go.
        SmallVector<Value> inputs = quantized->dequantize.getDpsInputs();
        for (Operation *view : llvm::reverse(quantized->views))
          rewriter.eraseOp(view);
        rewriter.eraseOp(quantized->dequantize);
        for (Operation *user : llvm::make_early_inc_range(quantized->buffer->getUsers()))
          rewriter.eraseOp(user);
        rewriter.eraseOp(quantized->buffer);
        for (Value input : inputs)
          eraseIfUnused(rewriter, input, symbols);
        continue;
      }
      // The f32 weight, now unread, leaves the module.
      if (packed || bf16Weight)
        eraseIfUnused(rewriter, oldWeight, symbols);
    }
  }

  /// Integer matmuls of int8 operands into i32 (what
  /// --hasten-fold-quantized-contractions writes for QDQ models) become calls of
  /// the runtime's int8 kernel, with the zero points as arguments.
  void rewriteQuantizedMatmuls(ModuleOp module) {
    MLIRContext *ctx = module.getContext();
    SmallVector<linalg::QuantizedMatmulOp> matmuls;
    module.walk([&](linalg::QuantizedMatmulOp op) {
      if (!op.hasPureBufferSemantics() || op.hasUserDefinedMaps())
        return;
      auto element = [&](unsigned i) {
        return cast<MemRefType>(op->getOperand(i).getType()).getElementType();
      };
      if (element(0).isInteger(8) && element(1).isInteger(8) && element(4).isInteger(32) &&
          op->getOperand(2).getType().isInteger(32) && op->getOperand(3).getType().isInteger(32))
        matmuls.push_back(op);
    });
    IRRewriter rewriter(ctx);
    Type i8 = IntegerType::get(ctx, 8), i32 = IntegerType::get(ctx, 32);
    Type a = anyStridedMemRef(ctx, 2, i8), c = anyStridedMemRef(ctx, 2, i32);
    for (linalg::QuantizedMatmulOp op : matmuls) {
      // A convolution's filter reaches its matmul transposed: read the
      // constant through a transposed view rather than copy it per call.
      viewThroughConstantTranspose(rewriter, op);
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      int32_t flags = isConstantWeight(op->getOperand(1)) ? kConstantWeights : 0;
      if (linalg::FillOp fill = zeroFillBefore(op)) {
        flags |= kOverwrite;
        rewriter.eraseOp(fill);
      }
      func::FuncOp callee =
          hasten::declareRuntimeFunction(module, "hasten_rt_matmul_i8", {a, a, c, i32, i32, i32});
      func::CallOp::create(rewriter, loc, callee,
                           ValueRange{memref::CastOp::create(rewriter, loc, a, op->getOperand(0)),
                                      memref::CastOp::create(rewriter, loc, a, op->getOperand(1)),
                                      memref::CastOp::create(rewriter, loc, c, op->getOperand(4)),
                                      op->getOperand(2), op->getOperand(3),
                                      arith::ConstantIntOp::create(rewriter, loc, flags, 32)});
      rewriter.eraseOp(op);
    }
  }

  /// The storage format for a constant weight of a 2-D matmul, from the
  /// options: quantized always packed; f32 and bf16 in strips when the
  /// layout is strips, except an f32 weight read transposed (a tied LM
  /// head shares the embedding table, which would then be stored twice).
  std::optional<hasten::abi::WeightFormat> formatFor(const WeightSource &source) const {
    using hasten::abi::WeightFormat;
    if (weights == "int8")
      return WeightFormat::Int8;
    if (weights == "int4")
      return hasten::abi::int4Format(int4Group, /*zeroPoints=*/false);
    if (weightLayout != "strips")
      return std::nullopt;
    if (weights == "bf16")
      return WeightFormat::Bf16Strips;
    if (source.transposed)
      return std::nullopt;
    return WeightFormat::F32Strips;
  }

  /// B as the quantized weight's values, scales and zero points packed as
  /// they are for the int8 or int4 kernels (flags get the format).
  Value quantizedWeightFor(IRRewriter &rewriter, linalg::LinalgOp op,
                           const QuantizedWeight &weight, SymbolTable &symbols,
                           int32_t &flags) const {
    using hasten::abi::WeightFormat;
    ArrayRef<int64_t> shape = cast<MemRefType>(op->getOperand(1).getType()).getShape();
    int64_t k = shape[0], n = shape[1];
    memref::GlobalOp values = weight.values;
    const char *formatName = hasten::abi::weightFormatName(weight.format);
    std::string name = (values.getSymName() + "_" + formatName).str();
    memref::GlobalOp global = symbols.lookup<memref::GlobalOp>(name);
    if (!global) {
      std::optional<std::vector<char>> data = globalBytes(values);
      if (!data)
        return nullptr;
      auto layout = hasten::abi::StripLayout::of(weight.format, k, n);
      PackedBytes bytes(layout.totalBytes);
      const char *q = data->data();
      // q's rows: [K / G][G] blocks are the same as [K] rows.
      hasten::abi::packQuantized(
          layout,
          [&](int64_t r, int64_t c) {
            int64_t v = weight.isUnsigned ? int64_t(uint8_t(q[r * n + c])) : int64_t(int8_t(q[r * n + c]));
            return uint8_t(v + weight.shift);
          },
          [&](int64_t group, int64_t c) { return weight.scales[group * n + c]; },
          [&](int64_t group, int64_t c) {
            return weight.zeroPoints.empty() ? uint8_t(0) : weight.zeroPoints[group * n + c];
          },
          bytes.data());
      global = createPackedGlobal(values, name, copyKey(values, formatName), std::move(bytes),
                                  weight.format, k, n, symbols);
    }
    flags |= kConstantWeights | (int32_t(weight.format) << hasten::abi::kWeightFormatShift);
    flags &= ~kBf16;
    return memref::GetGlobalOp::create(rewriter, op.getLoc(), global.getType(),
                                       global.getSymName());
  }

  /// B as a view of the weight packed for the kernels (flags get its
  /// format), or null when it stays as it is.
  Value packedWeightFor(IRRewriter &rewriter, linalg::LinalgOp op, SymbolTable &symbols,
                        int32_t &flags,
                        std::map<std::string, PackedBytes> &prepacked) const {
    if (!(flags & kConstantWeights))
      return nullptr;
    std::optional<WeightSource> source = weightSourceOf(op->getOperand(1), symbols);
    if (!source)
      return nullptr;
    std::optional<hasten::abi::WeightFormat> format = formatFor(*source);
    if (!format)
      return nullptr;
    memref::GlobalOp global = packedGlobalFor(*source, *format, symbols, prepacked);
    if (!global)
      return nullptr;
    flags |= int32_t(*format) << hasten::abi::kWeightFormatShift;
    return memref::GetGlobalOp::create(rewriter, op.getLoc(), global.getType(),
                                       global.getSymName());
  }

  /// Erases a dead transpose/get_global chain and a global nobody reads.
  static void eraseIfUnused(IRRewriter &rewriter, Value value, SymbolTable &symbols) {
    Operation *def = value.getDefiningOp();
    while (def && def->use_empty() &&
           isa<memref::TransposeOp, memref::GetGlobalOp, memref::CastOp, memref::ExpandShapeOp,
               memref::CollapseShapeOp>(def)) {
      Operation *next = def->getNumOperands() ? def->getOperand(0).getDefiningOp() : nullptr;
      if (auto get = dyn_cast<memref::GetGlobalOp>(def)) {
        StringAttr name = get.getNameAttr().getAttr();
        rewriter.eraseOp(def);
        auto global = symbols.lookup<memref::GlobalOp>(name);
        if (global && SymbolTable::symbolKnownUseEmpty(global, global->getParentOp()))
          symbols.erase(global);
        return;
      }
      rewriter.eraseOp(def);
      def = next;
    }
  }
};
} // namespace
