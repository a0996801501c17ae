//===- DialectTest.cpp - C++ API tests for the hasten dialect --------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace hasten;

namespace {

class HastenDialectTest : public ::testing::Test {
protected:
  HastenDialectTest() {
    context.loadDialect<HastenDialect, func::FuncDialect, arith::ArithDialect>();
  }
  MLIRContext context;
};

TEST_F(HastenDialectTest, KVCacheSizesFollowTheShape) {
  // GPT-2 small: 12 layers, 12 heads of 64, f32.
  auto cache = KVCacheType::get(&context, 12, 12, 64, 1024,
                                Float32Type::get(&context),
                                KVCacheLayout::Contiguous, 0);
  EXPECT_EQ(cache.getElementBytes(), 4);
  EXPECT_EQ(cache.getBytesPerToken(), 2 * 12 * 12 * 64 * 4);
  EXPECT_EQ(cache.getTotalBytes(), 2 * 12 * 12 * 64 * 4 * 1024);
  EXPECT_EQ(cache.getNumBlocks(), 1);
  EXPECT_FALSE(cache.isPaged());

  auto paged = KVCacheType::get(&context, 32, 8, 128, 4096,
                                BFloat16Type::get(&context),
                                KVCacheLayout::Paged, 16);
  EXPECT_TRUE(paged.isPaged());
  EXPECT_EQ(paged.getNumBlocks(), 256);
  EXPECT_EQ(paged.getBytesPerToken(), 2 * 32 * 8 * 128 * 2);
}

TEST_F(HastenDialectTest, KVCacheGetCheckedReportsTheBadParameter) {
  std::string message;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  auto emitAtUnknown = [&] { return mlir::emitError(UnknownLoc::get(&context)); };
  function_ref<InFlightDiagnostic()> emitError = emitAtUnknown;
  // Spelled with the exact parameter types so that the generated overload,
  // not the variadic base template, is chosen.
  auto getChecked = [&](int64_t capacity, Type elementType,
                        KVCacheLayout layout, int64_t blockSize) {
    int64_t numLayers = 2, numKvHeads = 4, headDim = 64;
    return KVCacheType::getChecked(emitError, &context, numLayers, numKvHeads,
                                   headDim, capacity, elementType, layout,
                                   blockSize);
  };
  EXPECT_FALSE(getChecked(100, Float32Type::get(&context),
                          KVCacheLayout::Paged, 16));
  EXPECT_EQ(message,
            "KV cache capacity (100) must be a multiple of block_size (16)");

  EXPECT_FALSE(getChecked(128, Float32Type::get(&context),
                          KVCacheLayout::Contiguous, 16));
  EXPECT_EQ(message, "a contiguous KV cache takes no block_size, got 16");

  EXPECT_FALSE(getChecked(128, IntegerType::get(&context, 32),
                          KVCacheLayout::Contiguous, 0));
  EXPECT_EQ(message, "KV cache element type must be a floating-point type, "
                     "got 'i32'");
}

TEST_F(HastenDialectTest, AttentionInfersItsResultAndDefaultScale) {
  OpBuilder builder(&context);
  Location loc = builder.getUnknownLoc();
  Type f32 = builder.getF32Type();
  auto queryType = RankedTensorType::get({1, 8, ShapedType::kDynamic, 64}, f32);
  auto keyType = RankedTensorType::get({1, 2, 40, 64}, f32);
  auto valueType = RankedTensorType::get({1, 2, 40, 32}, f32);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(
      builder, loc, "f",
      builder.getFunctionType({queryType, keyType, valueType}, {}));
  Block *body = func.addEntryBlock();
  builder.setInsertionPointToEnd(body);
  auto attention = AttentionOp::create(
      builder, loc, body->getArgument(0), body->getArgument(1),
      body->getArgument(2), /*mask=*/Value(), /*num_heads=*/8,
      /*num_kv_heads=*/2, /*causal=*/true, /*scale=*/nullptr, /*tiling=*/nullptr);
  func::ReturnOp::create(builder, loc);

  auto resultType = attention.getResult().getType();
  EXPECT_EQ(resultType,
            RankedTensorType::get({1, 8, ShapedType::kDynamic, 32}, f32));
  ASSERT_TRUE(attention.getEffectiveScale().has_value());
  EXPECT_DOUBLE_EQ(*attention.getEffectiveScale(), 0.125);
  EXPECT_TRUE(succeeded(verify(*module)));
}

TEST_F(HastenDialectTest, KVCacheViewInfersOneSequenceOfKeysAndValues) {
  const char *source = R"mlir(
    func.func @f(%c: !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 16, capacity = 64, f16, paged<block_size = 16>>, %n: index) {
      %k, %v = hasten.kv_cache.view %c[layer 1] length %n
          : !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 16, capacity = 64, f16, paged<block_size = 16>>
      return
    }
  )mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
  ASSERT_TRUE(module);
  KVCacheViewOp view;
  module->walk([&](KVCacheViewOp op) { view = op; });
  ASSERT_TRUE(view);
  auto expected = RankedTensorType::get({1, 4, ShapedType::kDynamic, 16},
                                        Float16Type::get(&context));
  EXPECT_EQ(view.getKeys().getType(), expected);
  EXPECT_EQ(view.getValues().getType(), expected);
}

} // namespace
