//===- StringOps.cpp - ONNX's string tensors ------------------------------===//
//
// A string tensor of shape S lives in two tensors: its strings' bytes, one
// row per string padded to the longest ([S..., W] i8), and their lengths
// ([S...] i64); a module takes and returns them with the string_bytes and
// string_lengths roles. Bytes are bytes: strings may hold any of them.
//
// Cast between numbers and strings calls small runtime functions one
// element at a time (formatting as numpy's str() does, the shortest text
// that reads back to the same value; parsing as ONNX describes, "INF",
// "-INF" and "NaN" in any case included), in an scf.for: the calls keep a
// per-thread parse state, so the elements must not be spread over threads.
// StringNormalizer is plain IR: an ASCII case map over the bytes, each
// string compared with the constant stop words, the kept rows copied.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"
#include "hasten/Support/RuntimeFunctions.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// The widest text a number formats to (a negative double in scientific
/// notation: 24 bytes), rounded up to whole 8-byte chunks.
constexpr int64_t kFormattedWidth = 32;

/// The module being imported into, found from where `b` builds (before
/// the loops whose bodies call the runtime: a body is built before its loop
/// joins the module).
ModuleOp moduleOf(OpBuilder &b) {
  Operation *anchor = b.getInsertionBlock()->getParentOp();
  return isa<ModuleOp>(anchor) ? cast<ModuleOp>(anchor) : anchor->getParentOfType<ModuleOp>();
}

Value call(OpBuilder &b, ModuleOp module, Location loc, StringRef name, Type result,
           ValueRange args) {
  TypeRange results = result ? TypeRange(result) : TypeRange();
  auto op = func::CallOp::create(
      b, loc, declareRuntimeFunction(module, name, ValueRange(args).getTypes(), results), args);
  return result ? op.getResult(0) : Value();
}

Value i32Constant(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIntOp::create(b, loc, b.getI32Type(), v);
}

/// `tensor` reshaped to one dimension (its elements in row-major order).
Value flatten(OpBuilder &b, Location loc, Value tensor, Value count) {
  return reshapeTo(b, loc, tensor, ArrayRef<OpFoldResult>{count});
}

/// Numbers to strings: each element formatted by the runtime into a row of
/// kFormattedWidth bytes (four 8-byte chunks) and its length.
ImportedValue formatNumbers(OpBuilder &b, Location loc, Value input, bool isUnsigned) {
  ModuleOp module = moduleOf(b);
  auto type = cast<RankedTensorType>(input.getType());
  Type element = type.getElementType();
  Type i64 = b.getI64Type(), i8 = b.getI8Type();
  Value count = numElementsOf(b, loc, input);
  Value flat = flatten(b, loc, input, count);
  Value bytes = createEmpty(b, loc, {count, b.getIndexAttr(kFormattedWidth)}, i8);
  Value lengths = createEmpty(b, loc, {count}, i64);
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, zero, count, one, ValueRange{bytes, lengths},
      [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
        Value x = tensor::ExtractOp::create(lb, ll, flat, ValueRange{i});
        // One call per chunk: which function, and x as it takes it.
        std::function<Value(int64_t)> chunk;
        if (isa<FloatType>(element)) {
          bool f32 = element.getIntOrFloatBitWidth() <= 32;
          Value wide =
              element.isF64() ? x : Value(arith::ExtFOp::create(lb, ll, lb.getF64Type(), x));
          chunk = [&, wide, f32](int64_t c) {
            return call(lb, module, ll, "hasten_rt_format_float", i64,
                        {wide, i32Constant(lb, ll, f32), i32Constant(lb, ll, c)});
          };
        } else {
          int64_t kind = element.isInteger(1) ? 2 : isUnsigned ? 1 : 0;
          Value wide = x;
          if (element.getIntOrFloatBitWidth() < 64)
            wide = isUnsigned || element.isInteger(1)
                       ? Value(arith::ExtUIOp::create(lb, ll, i64, x))
                       : Value(arith::ExtSIOp::create(lb, ll, i64, x));
          chunk = [&, wide, kind](int64_t c) {
            return call(lb, module, ll, "hasten_rt_format_integer", i64,
                        {wide, i32Constant(lb, ll, kind), i32Constant(lb, ll, c)});
          };
        }
        Value row = acc[0];
        for (int64_t c = 0; c < kFormattedWidth / 8; ++c) {
          Value word = chunk(c);
          for (int64_t k = 0; k < 8; ++k) {
            Value shifted = arith::ShRUIOp::create(
                lb, ll, word, arith::ConstantIntOp::create(lb, ll, i64, 8 * k));
            Value byte = arith::TruncIOp::create(lb, ll, i8, shifted);
            row = tensor::InsertOp::create(lb, ll, byte, row,
                                           ValueRange{i, indexConstant(lb, ll, 8 * c + k)});
          }
        }
        Value length = chunk(kFormattedWidth / 8);
        Value lengths = tensor::InsertOp::create(lb, ll, length, acc[1], ValueRange{i});
        scf::YieldOp::create(lb, ll, ValueRange{row, lengths});
      });
  SmallVector<OpFoldResult> shape = tensor::getMixedSizes(b, loc, input);
  SmallVector<OpFoldResult> rowsShape = shape;
  rowsShape.push_back(b.getIndexAttr(kFormattedWidth));
  ImportedValue value;
  value.tensor = reshapeTo(b, loc, loop.getResult(0), rowsShape);
  value.stringLengths = reshapeTo(b, loc, loop.getResult(1), shape);
  return value;
}

/// Strings to numbers of `to`: each string's bytes pushed to the runtime's
/// parser, read back as a double (a float rounded once, for f32) and cast.
Value parseStrings(OpBuilder &b, Location loc, const ImportedValue &strings, Type to,
                   bool toUnsigned) {
  ModuleOp module = moduleOf(b);
  Value lengths = strings.stringLengths;
  Value count = numElementsOf(b, loc, lengths);
  Value flatLengths = flatten(b, loc, lengths, count);
  auto bytesType = cast<RankedTensorType>(strings.tensor.getType());
  Value width = tensor::DimOp::create(b, loc, strings.tensor, bytesType.getRank() - 1);
  Value rows = reshapeTo(b, loc, strings.tensor, {count, width});
  Value result = createEmpty(b, loc, {count}, to);
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);
  bool f32 = isa<FloatType>(to) && to.getIntOrFloatBitWidth() <= 32;
  auto loop = scf::ForOp::create(
      b, loc, zero, count, one, ValueRange{result},
      [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
        call(lb, module, ll, "hasten_rt_parse_begin", Type(), {});
        Value length =
            toIndex(lb, ll, tensor::ExtractOp::create(lb, ll, flatLengths, ValueRange{i}));
        length = arith::MinSIOp::create(lb, ll, length, width);
        scf::ForOp::create(lb, ll, zero, length, one, ValueRange{},
                           [&](OpBuilder &bb, Location bl, Value k, ValueRange) {
                             Value byte = tensor::ExtractOp::create(bb, bl, rows, ValueRange{i, k});
                             call(bb, module, bl, "hasten_rt_parse_byte", Type(),
                                  {arith::ExtUIOp::create(bb, bl, bb.getI32Type(), byte)});
                             scf::YieldOp::create(bb, bl);
                           });
        Value parsed = call(lb, module, ll, "hasten_rt_parse_end", lb.getF64Type(),
                            {i32Constant(lb, ll, f32)});
        Value converted = castScalar(lb, ll, parsed, to, /*srcUnsigned=*/false, toUnsigned);
        scf::YieldOp::create(
            lb, ll, ValueRange{tensor::InsertOp::create(lb, ll, converted, acc[0], ValueRange{i})});
      });
  return reshapeTo(b, loc, loop.getResult(0), tensor::getMixedSizes(b, loc, lengths));
}

/// ASCII case mapping of every byte: LOWER maps A-Z to a-z, UPPER a-z to A-Z.
Value changeCase(OpBuilder &b, Location loc, Value bytes, bool upper) {
  Type i8 = b.getI8Type();
  return buildElementwise(b, loc, {bytes}, i8, [&](OpBuilder &eb, Location el, ValueRange args) {
    Value c = args[0];
    Value first = arith::ConstantIntOp::create(eb, el, i8, upper ? 'a' : 'A');
    Value last = arith::ConstantIntOp::create(eb, el, i8, upper ? 'z' : 'Z');
    Value inRange = arith::AndIOp::create(
        eb, el, arith::CmpIOp::create(eb, el, arith::CmpIPredicate::uge, c, first),
        arith::CmpIOp::create(eb, el, arith::CmpIPredicate::ule, c, last));
    Value shift = arith::ConstantIntOp::create(eb, el, i8, 32);
    Value mapped = upper ? Value(arith::SubIOp::create(eb, el, c, shift))
                         : Value(arith::AddIOp::create(eb, el, c, shift));
    return Value(arith::SelectOp::create(eb, el, inRange, mapped, c));
  });
}

Value lowerByte(OpBuilder &b, Location loc, Value c) {
  Type i8 = b.getI8Type();
  Value inRange =
      arith::AndIOp::create(b, loc,
                            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, c,
                                                  arith::ConstantIntOp::create(b, loc, i8, 'A')),
                            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, c,
                                                  arith::ConstantIntOp::create(b, loc, i8, 'Z')));
  return arith::SelectOp::create(
      b, loc, inRange,
      arith::AddIOp::create(b, loc, c, arith::ConstantIntOp::create(b, loc, i8, 32)), c);
}

/// StringNormalizer: stop words removed (compared case-sensitively or not),
/// then every kept string's case changed; [C] or [1, C] in, [M] or [1, M]
/// out, one empty string when nothing is kept.
LogicalResult convertStringNormalizer(NodeContext &ctx) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  const ImportedValue &x = ctx.info(0);
  if (!x.isString())
    return ctx.fail("input #0 must be a string tensor");
  auto lengthsType = cast<RankedTensorType>(x.stringLengths.getType());
  bool twoDims = lengthsType.getRank() == 2;
  if (lengthsType.getRank() != 1 && !(twoDims && lengthsType.getDimSize(0) == 1))
    return ctx.emitError() << "takes strings of shape [C] or [1, C], got rank "
                           << lengthsType.getRank();
  std::string action = ctx.getString("case_change_action", "NONE");
  if (action != "NONE" && action != "LOWER" && action != "UPPER")
    return ctx.fail("case_change_action must be NONE, LOWER or UPPER, got '" + action + "'");
  bool caseSensitive = ctx.getInt("is_case_sensitive", 0) != 0;
  std::string locale = ctx.getString("locale", "");
  // Case is mapped for ASCII letters, which is what these locales do for
  // them; another locale could map other letters too.
  if (!locale.empty() && locale != "en_US" && locale != "en_US.UTF-8" && locale != "C" &&
      locale != "POSIX")
    return ctx.fail("locale '" + locale +
                    "' is not supported (only ASCII case mapping: en_US, "
                    "C)");
  SmallVector<std::string> stopwords;
  if (const onnx::AttributeProto *attr = ctx.attr("stopwords"))
    for (const std::string &word : attr->strings())
      stopwords.push_back(word);

  Type i8 = b.getI8Type(), i64 = b.getI64Type(), i1 = b.getI1Type();
  Value bytes = x.tensor, lengths = x.stringLengths;
  if (twoDims) {
    bytes = dropUnitDims(b, loc, bytes, {0});
    lengths = dropUnitDims(b, loc, lengths, {0});
  }
  Value count = tensor::DimOp::create(b, loc, lengths, 0);
  Value width = tensor::DimOp::create(b, loc, bytes, 1);
  Value changed = action == "NONE" ? bytes : changeCase(b, loc, bytes, action == "UPPER");
  Value zero = indexConstant(b, loc, 0), one = indexConstant(b, loc, 1);

  // The kept strings, copied in order to the front of same-size buffers.
  Value outBytes =
      createFilled(b, loc, {count, width}, arith::ConstantIntOp::create(b, loc, i8, 0));
  Value outLengths = createFilled(b, loc, {count}, arith::ConstantIntOp::create(b, loc, i64, 0));
  auto loop = scf::ForOp::create(
      b, loc, zero, count, one, ValueRange{outBytes, outLengths, zero},
      [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
        Value length = tensor::ExtractOp::create(lb, ll, lengths, ValueRange{i});
        Value stop = arith::ConstantIntOp::create(lb, ll, i1, 0);
        for (const std::string &word : stopwords) {
          Value sameLength = arith::CmpIOp::create(
              lb, ll, arith::CmpIPredicate::eq, length,
              arith::ConstantIntOp::create(lb, ll, i64, (int64_t)word.size()));
          auto compare = scf::IfOp::create(lb, ll, TypeRange{i1}, sameLength, true);
          {
            OpBuilder tb = OpBuilder::atBlockBegin(&compare.getThenRegion().front());
            Value equal = arith::ConstantIntOp::create(tb, ll, i1, 1);
            for (size_t k = 0; k < word.size(); ++k) {
              Value c =
                  tensor::ExtractOp::create(tb, ll, bytes, ValueRange{i, indexConstant(tb, ll, k)});
              Value w = arith::ConstantIntOp::create(tb, ll, i8, (int8_t)word[k]);
              if (!caseSensitive) {
                c = lowerByte(tb, ll, c);
                w = lowerByte(tb, ll, w);
              }
              equal = arith::AndIOp::create(
                  tb, ll, equal, arith::CmpIOp::create(tb, ll, arith::CmpIPredicate::eq, c, w));
            }
            scf::YieldOp::create(tb, ll, ValueRange{equal});
          }
          {
            OpBuilder eb = OpBuilder::atBlockBegin(&compare.getElseRegion().front());
            scf::YieldOp::create(eb, ll, ValueRange{arith::ConstantIntOp::create(eb, ll, i1, 0)});
          }
          stop = arith::OrIOp::create(lb, ll, stop, compare.getResult(0));
        }
        Value at = acc[2];
        auto keep = scf::IfOp::create(lb, ll, ValueRange(acc).getTypes(), stop, true);
        {
          OpBuilder tb = OpBuilder::atBlockBegin(&keep.getThenRegion().front());
          scf::YieldOp::create(tb, ll, acc);
        }
        {
          OpBuilder eb = OpBuilder::atBlockBegin(&keep.getElseRegion().front());
          SmallVector<OpFoldResult> rowSizes = {eb.getIndexAttr(1), width};
          SmallVector<OpFoldResult> ones = {eb.getIndexAttr(1), eb.getIndexAttr(1)};
          Value row = tensor::ExtractSliceOp::create(
              eb, ll, changed, ArrayRef<OpFoldResult>{i, eb.getIndexAttr(0)}, rowSizes, ones);
          Value placed = tensor::InsertSliceOp::create(
              eb, ll, row, acc[0], ArrayRef<OpFoldResult>{at, eb.getIndexAttr(0)}, rowSizes, ones);
          Value placedLength = tensor::InsertOp::create(eb, ll, length, acc[1], ValueRange{at});
          Value next = arith::AddIOp::create(eb, ll, at, indexConstant(eb, ll, 1));
          scf::YieldOp::create(eb, ll, ValueRange{placed, placedLength, next});
        }
        scf::YieldOp::create(lb, ll, keep.getResults());
      });
  // At least one row: nothing kept gives one empty string (its length is
  // the buffers' zero).
  Value kept = arith::MaxSIOp::create(b, loc, loop.getResult(2), one);
  kept = arith::MinSIOp::create(b, loc, kept, arith::MaxSIOp::create(b, loc, count, one));
  Value resultBytes = loop.getResult(0), resultLengths = loop.getResult(1);
  Value nonEmpty = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, count, zero);
  // An empty input still gives one (empty) string: one zero row.
  auto ensured = scf::IfOp::create(
      b, loc,
      TypeRange{RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic}, i8),
                RankedTensorType::get({ShapedType::kDynamic}, i64)},
      nonEmpty, true);
  {
    OpBuilder tb = OpBuilder::atBlockBegin(&ensured.getThenRegion().front());
    Value rowsKept = tensor::ExtractSliceOp::create(
        tb, loc, resultBytes, ArrayRef<OpFoldResult>{tb.getIndexAttr(0), tb.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{kept, width},
        ArrayRef<OpFoldResult>{tb.getIndexAttr(1), tb.getIndexAttr(1)});
    Value lengthsKept = tensor::ExtractSliceOp::create(
        tb, loc, resultLengths, ArrayRef<OpFoldResult>{tb.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{kept}, ArrayRef<OpFoldResult>{tb.getIndexAttr(1)});
    scf::YieldOp::create(
        tb, loc,
        ValueRange{castIfNeeded(tb, loc, rowsKept, ensured.getResult(0).getType()),
                   castIfNeeded(tb, loc, lengthsKept, ensured.getResult(1).getType())});
  }
  {
    OpBuilder eb = OpBuilder::atBlockBegin(&ensured.getElseRegion().front());
    Value emptyRow = createFilled(eb, loc, {eb.getIndexAttr(1), eb.getIndexAttr(0)},
                                  arith::ConstantIntOp::create(eb, loc, i8, 0));
    Value zeroLength =
        createFilled(eb, loc, {eb.getIndexAttr(1)}, arith::ConstantIntOp::create(eb, loc, i64, 0));
    scf::YieldOp::create(
        eb, loc,
        ValueRange{castIfNeeded(eb, loc, emptyRow, ensured.getResult(0).getType()),
                   castIfNeeded(eb, loc, zeroLength, ensured.getResult(1).getType())});
  }
  ImportedValue result;
  result.tensor = ensured.getResult(0);
  result.stringLengths = ensured.getResult(1);
  if (twoDims) {
    result.tensor = insertUnitDims(b, loc, result.tensor, {0});
    result.stringLengths = insertUnitDims(b, loc, result.stringLengths, {0});
  }
  ctx.setOutputValue(0, result);
  return success();
}

} // namespace

LogicalResult onnx_import::convertStringCast(NodeContext &ctx, const ImportedValue &input, Type to,
                                             bool toUnsigned, bool toString) {
  if (input.isString() && toString) {
    ctx.setOutputValue(0, input);
    return success();
  }
  if (toString) {
    Type element = cast<ShapedType>(input.tensor.getType()).getElementType();
    // f16 and bf16 would need their own shortest digits (numpy writes a
    // half's 0.1 as "0.1", its float value as "0.099975586").
    if (!element.isF32() && !element.isF64() && !element.isInteger())
      return ctx.emitError() << "casting " << element << " to strings is not supported";
    Value tensor = input.tensor;
    ctx.setOutputValue(0, formatNumbers(ctx.b, ctx.loc, tensor, input.isUnsigned));
    return success();
  }
  if (!(isa<FloatType>(to) || to.isInteger()) || to.isBF16())
    return ctx.emitError() << "casting strings to " << to << " is not supported";
  ctx.setOutput(0, parseStrings(ctx.b, ctx.loc, input, to, toUnsigned), toUnsigned);
  return success();
}

bool onnx_import::takesStrings(StringRef opType) {
  return llvm::is_contained({"Identity", "Cast", "CastLike", "StringNormalizer", "If", "Loop"},
                            opType);
}

void onnx_import::registerStringConverters(ConverterTable &table) {
  table["StringNormalizer"] = convertStringNormalizer;
}
