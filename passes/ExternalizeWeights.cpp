//===- ExternalizeWeights.cpp - weights out of the code, into one segment -===//
//
// LLVM's code generator handling hundreds of megabytes of constants was
// most of a compile, and the loader then copied what the runtime packed
// again. Constant globals become offsets into one weight segment that the
// runtime maps read-only at load (from the module file or a sidecar) and
// whose address it stores in the module's `hasten_weights_base`; the bytes
// leave the IR for the module attribute the compiler writes the segment
// from.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/SymbolTable.h"

namespace hasten {
#define GEN_PASS_DEF_EXTERNALIZEWEIGHTS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

constexpr StringLiteral kBaseSymbol = "hasten_weights_base";
constexpr int64_t kWeightAlignment = 64;

/// The bytes a constant global's value occupies in memory, when they can
/// be read without interpretation: byte-sized elements, dense or resource.
std::optional<int64_t> valueBytes(Attribute value) {
  auto elements = dyn_cast_or_null<ElementsAttr>(value);
  if (!elements)
    return std::nullopt;
  Type element = elements.getShapedType().getElementType();
  if (element.isInteger(1) && isa<DenseIntElementsAttr>(value))
    return elements.getNumElements(); // a byte each (storedValue)
  if (!element.isIntOrFloat() || element.getIntOrFloatBitWidth() % 8 != 0)
    return std::nullopt;
  int64_t bytes = elements.getNumElements() * (element.getIntOrFloatBitWidth() / 8);
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob || (int64_t)blob->getData().size() != bytes)
      return std::nullopt;
    return bytes;
  }
  if (isa<DenseIntOrFPElementsAttr>(value))
    return bytes;
  return std::nullopt;
}

/// The value as the segment stores it: booleans take a byte each in memory
/// (LLVM's data layout) but are packed as bits in a DenseElementsAttr, so
/// they are written out as i8 0/1; other values as they are.
Attribute storedValue(Attribute value) {
  auto dense = dyn_cast<DenseIntElementsAttr>(value);
  if (!dense || !dense.getElementType().isInteger(1))
    return value;
  SmallVector<int8_t> bytes;
  bytes.reserve(dense.getNumElements());
  for (bool bit : dense.getValues<bool>())
    bytes.push_back(bit);
  auto type = RankedTensorType::get(dense.getType().getShape(),
                                    IntegerType::get(value.getContext(), 8));
  return DenseElementsAttr::get(type, ArrayRef<int8_t>(bytes));
}

struct ExternalizeWeightsPass
    : public hasten::impl::ExternalizeWeightsBase<ExternalizeWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    if (module->hasAttr(hasten::HastenDialect::kWeightSegmentAttrName)) {
      module.emitError("the module's weights are already externalized");
      return signalPassFailure();
    }
    SmallVector<std::pair<LLVM::GlobalOp, int64_t>> moved;
    int64_t size = 0;
    for (auto global : module.getOps<LLVM::GlobalOp>()) {
      if (!global.getConstant() || global.getSymName().starts_with("hasten_") ||
          (global.getLinkage() != LLVM::Linkage::Internal &&
           global.getLinkage() != LLVM::Linkage::Private))
        continue;
      std::optional<int64_t> bytes = valueBytes(global.getValueOrNull());
      if (!bytes || *bytes < minBytes)
        continue;
      int64_t alignment = std::max<int64_t>(kWeightAlignment, global.getAlignment().value_or(1));
      size = (size + alignment - 1) / alignment * alignment;
      moved.push_back({global, size});
      size += *bytes;
    }
    if (moved.empty())
      return;

    // The base the runtime sets at load: null until then.
    OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto base = LLVM::GlobalOp::create(b, module.getLoc(), ptr, /*isConstant=*/false,
                                       LLVM::Linkage::External, kBaseSymbol, Attribute(),
                                       /*alignment=*/8);
    {
      OpBuilder::InsertionGuard guard(b);
      b.createBlock(&base.getInitializerRegion());
      Value zero = LLVM::ZeroOp::create(b, module.getLoc(), ptr);
      LLVM::ReturnOp::create(b, module.getLoc(), zero);
    }

    // Every address of a moved global becomes base + offset.
    DenseMap<StringAttr, int64_t> offsets;
    for (auto [global, offset] : moved)
      offsets[global.getSymNameAttr()] = offset;
    module.walk([&](LLVM::AddressOfOp address) {
      auto it = offsets.find(address.getGlobalNameAttr().getAttr());
      if (it == offsets.end())
        return;
      OpBuilder at(address);
      Location loc = address.getLoc();
      Value slot = LLVM::AddressOfOp::create(at, loc, base);
      Value start = LLVM::LoadOp::create(at, loc, ptr, slot, /*alignment=*/8);
      // An i64 value, not a constant GEP index: those hold 29 bits, and a
      // segment passes 256 MiB.
      Value offset = LLVM::ConstantOp::create(at, loc, at.getI64Type(),
                                              at.getI64IntegerAttr(it->second));
      Value weight = LLVM::GEPOp::create(at, loc, ptr, at.getI8Type(), start,
                                         ArrayRef<LLVM::GEPArg>{offset},
                                         LLVM::GEPNoWrapFlags::inbounds);
      address.replaceAllUsesWith(weight);
      address.erase();
    });

    // The values, for the compiler to write the segment from.
    SmallVector<Attribute> pieces;
    for (auto [global, offset] : moved) {
      NamedAttribute fields[] = {
          b.getNamedAttr("name", global.getSymNameAttr()),
          b.getNamedAttr("offset", b.getI64IntegerAttr(offset)),
          b.getNamedAttr("value", storedValue(global.getValueOrNull())),
      };
      pieces.push_back(b.getDictionaryAttr(fields));
      global.erase();
    }
    NamedAttribute segment[] = {b.getNamedAttr("bytes", b.getI64IntegerAttr(size)),
                                b.getNamedAttr("weights", b.getArrayAttr(pieces))};
    module->setAttr(hasten::HastenDialect::kWeightSegmentAttrName, b.getDictionaryAttr(segment));
  }
};

} // namespace
