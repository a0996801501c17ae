//===- MatmulOperands.cpp - where a matmul's operands come from -----------===//

#include "MatmulOperands.h"

#include "hasten/KernelAbi.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <cstring>

using namespace mlir;
namespace abi = hasten::abi;

/// True when `value` is (a view of) a constant global: a weight.
bool hasten::isConstantWeight(Value value) {
  while (Operation *def = value.getDefiningOp()) {
    if (auto global = dyn_cast<memref::GetGlobalOp>(def)) {
      auto symbol = SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
          def, global.getNameAttr());
      return symbol && symbol.getConstant();
    }
    if (auto view = dyn_cast<ViewLikeOpInterface>(def)) {
      value = view.getViewSource();
      continue;
    }
    if (auto cast = dyn_cast<memref::CastOp>(def)) {
      value = cast.getSource();
      continue;
    }
    if (auto transpose = dyn_cast<memref::TransposeOp>(def)) {
      value = transpose.getIn();
      continue;
    }
    return false;
  }
  return false;
}

/// The linalg.fill of zero that last wrote `op`'s output, when nothing else
/// touches memory in between: the matmul can then overwrite instead of
/// accumulate, and the fill is dead.
linalg::FillOp hasten::zeroFillBefore(linalg::LinalgOp op) {
  Value output = op.getDpsInits()[0];
  for (Operation *prev = op->getPrevNode(); prev; prev = prev->getPrevNode()) {
    if (auto fill = dyn_cast<linalg::FillOp>(prev)) {
      if (fill.getDpsInits()[0] != output)
        return nullptr;
      auto zero = fill.getInputs()[0].getDefiningOp<arith::ConstantOp>();
      if (auto integer = zero ? dyn_cast<IntegerAttr>(zero.getValue()) : nullptr)
        return integer.getValue().isZero() ? fill : nullptr;
      auto value = zero ? dyn_cast<FloatAttr>(zero.getValue()) : nullptr;
      return value && value.getValue().isZero() ? fill : nullptr;
    }
    // Views, constants and index math between the two are fine; anything
    // that may read or write memory is not.
    if (!isMemoryEffectFree(prev) && !isa<ViewLikeOpInterface>(prev))
      return nullptr;
  }
  return nullptr;
}

/// When B is a transposed copy of a constant weight (a tied LM head reads
/// the embedding matrix as Transpose(embed)), returns a transposed view of
/// the weight itself, and erases the copy: the kernels take strided
/// operands, and the copy would cost a pass over the whole matrix per call.
Value hasten::viewThroughConstantTranspose(IRRewriter &rewriter, linalg::LinalgOp op) {
  Value b = op->getOperand(1);
  auto alloc = b.getDefiningOp<memref::AllocOp>();
  if (!alloc)
    return nullptr;
  linalg::TransposeOp transpose;
  SmallVector<Operation *> deallocs;
  for (Operation *user : alloc->getUsers()) {
    if (user == op.getOperation())
      continue;
    if (isa<memref::DeallocOp>(user)) {
      deallocs.push_back(user);
      continue;
    }
    auto t = dyn_cast<linalg::TransposeOp>(user);
    if (!t || transpose || t.getInit() != b || t->getBlock() != op->getBlock() ||
        !t->isBeforeInBlock(op))
      return nullptr;
    transpose = t;
  }
  if (!transpose || !isConstantWeight(transpose.getInput()))
    return nullptr;
  ArrayRef<int64_t> perm = transpose.getPermutation();
  auto inputType = cast<MemRefType>(transpose.getInput().getType());
  if (!inputType.getLayout().isIdentity())
    return nullptr;
  rewriter.setInsertionPoint(op);
  auto map = AffineMap::getPermutationMap(perm, op->getContext());
  Value view = memref::TransposeOp::create(rewriter, op.getLoc(), transpose.getInput(),
                                           AffineMapAttr::get(map));
  rewriter.eraseOp(transpose);
  for (Operation *dealloc : deallocs)
    rewriter.eraseOp(dealloc);
  op->setOperand(1, view);
  if (alloc->use_empty())
    rewriter.eraseOp(alloc);
  return view;
}

/// The values of the constant f32 global `global`, or nothing when they
/// cannot be read.
std::optional<std::vector<float>> hasten::readF32Values(memref::GlobalOp global) {
  auto initial = global.getInitialValue();
  if (!initial || !global.getType().getElementType().isF32())
    return std::nullopt;
  std::vector<float> values;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(*initial)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    ArrayRef<char> bytes = blob->getData();
    values.resize(bytes.size() / sizeof(float));
    std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  } else if (auto dense = dyn_cast<DenseElementsAttr>(*initial)) {
    values.reserve(dense.getNumElements());
    for (float v : dense.getValues<float>())
      values.push_back(v);
  } else {
    return std::nullopt;
  }
  if ((int64_t)values.size() != global.getType().getNumElements())
    return std::nullopt;
  return values;
}

/// The resource key a copy of `global` is stored under: the weight's ONNX
/// name (the manifest lists weights by it) with `suffix`.
std::string hasten::copyKey(memref::GlobalOp global, StringRef suffix) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(*global.getInitialValue()))
    return (resource.getRawHandle().getKey() + "." + suffix).str();
  return ("weight_" + suffix).str();
}

/// A copy of the constant f32 global `global` in `element` (bf16, rounded
/// as the runtime rounds, or f16), created once, next to it; null when its
/// value cannot be read.
memref::GlobalOp hasten::narrowedGlobalFor(memref::GlobalOp global, FloatType element,
                                           SymbolTable &symbols) {
  std::string suffix = element.isBF16() ? "bf16" : "f16";
  std::string name = (global.getSymName() + "_" + suffix).str();
  if (auto existing = symbols.lookup<memref::GlobalOp>(name))
    return existing;
  std::optional<std::vector<float>> values = readF32Values(global);
  if (!values)
    return nullptr;
  MemRefType f32Type = global.getType();
  std::vector<uint16_t> halves(values->size());
  for (size_t i = 0; i < values->size(); ++i) {
    if (element.isBF16()) {
      halves[i] = abi::toBf16((*values)[i]);
      continue;
    }
    bool lost;
    llvm::APFloat value((*values)[i]);
    value.convert(llvm::APFloat::IEEEhalf(), llvm::APFloat::rmNearestTiesToEven, &lost);
    halves[i] = uint16_t(value.bitcastToAPInt().getZExtValue());
  }
  auto tensorType = RankedTensorType::get(f32Type.getShape(), element);
  auto attr = DenseResourceElementsAttr::get(
      tensorType, copyKey(global, suffix),
      HeapAsmResourceBlob::allocateAndCopyInferAlign<uint16_t>(halves));
  OpBuilder b(global);
  auto copy = memref::GlobalOp::create(b, global.getLoc(), name, b.getStringAttr("private"),
                                       MemRefType::get(f32Type.getShape(), element), attr,
                                       /*constant=*/true, b.getI64IntegerAttr(64));
  symbols.insert(copy);
  return copy;
}
