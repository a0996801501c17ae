//===- ImportTest.cpp - C++ API tests for the ONNX import library ----------===//

#include "hasten/Import/OnnxImporter.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <fstream>
#include <gtest/gtest.h>

using namespace mlir;

namespace {

/// A temporary file removed at scope exit.
struct TempFile {
  TempFile() {
    llvm::SmallString<128> p;
    llvm::sys::fs::createTemporaryFile("hasten-import-test", "onnx", p);
    path = std::string(p);
  }
  ~TempFile() { llvm::sys::fs::remove(path); }
  std::string path;
};

void addTensorInput(onnx::ValueInfoProto *info, const std::string &name,
                    std::initializer_list<int64_t> dims,
                    const std::string &symbolic = "") {
  info->set_name(name);
  auto *tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  auto *shape = tensor->mutable_shape();
  for (int64_t d : dims) {
    auto *dim = shape->add_dim();
    if (d < 0)
      dim->set_dim_param(symbolic);
    else
      dim->set_dim_value(d);
  }
}

/// y = Relu(x + w) with x [n, 4] and a constant w [4].
onnx::ModelProto makeModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  auto *opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(17);
  auto *graph = model.mutable_graph();
  graph->set_name("g");
  addTensorInput(graph->add_input(), "x", {-1, 4}, "n");
  addTensorInput(graph->add_output(), "y", {-1, 4}, "n");
  auto *w = graph->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(4);
  for (float v : {1.0f, 2.0f, 3.0f, 4.0f})
    w->add_float_data(v);
  auto *add = graph->add_node();
  add->set_op_type("Add");
  add->set_name("add");
  add->add_input("x");
  add->add_input("w");
  add->add_output("s");
  auto *relu = graph->add_node();
  relu->set_op_type("Relu");
  relu->set_name("relu");
  relu->add_input("s");
  relu->add_output("y");
  return model;
}

void write(const onnx::ModelProto &model, const std::string &path) {
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
}

TEST(OnnxImport, ImportsAFunctionWithDynamicDims) {
  TempFile file;
  write(makeModel(), file.path);
  MLIRContext context;
  auto module = hasten::importOnnxFile(file.path, context);
  ASSERT_TRUE(succeeded(module));
  auto func = (*module)->lookupSymbol<func::FuncOp>("main");
  ASSERT_TRUE(func);
  auto dynamic = RankedTensorType::get({ShapedType::kDynamic, 4},
                                       Float32Type::get(&context));
  EXPECT_EQ(func.getFunctionType().getInputs()[0], dynamic);
  EXPECT_EQ(func.getFunctionType().getResults()[0], dynamic);
  EXPECT_EQ(func.getArgAttrOfType<StringAttr>(0, "hasten.onnx_name").getValue(), "x");
}

TEST(OnnxImport, EntryNameIsAnOption) {
  TempFile file;
  write(makeModel(), file.path);
  MLIRContext context;
  hasten::OnnxImportOptions options;
  options.entryName = "forward";
  auto module = hasten::importOnnxFile(file.path, context, options);
  ASSERT_TRUE(succeeded(module));
  EXPECT_TRUE((*module)->lookupSymbol<func::FuncOp>("forward"));
}

TEST(OnnxImport, UnknownOpFailsWithOneDiagnosticNamingIt) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(1)->set_op_type("Mystery");
  TempFile file;
  write(model, file.path);
  MLIRContext context;
  std::vector<std::string> errors;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    errors.push_back(diag.str());
    return success();
  });
  EXPECT_TRUE(failed(hasten::importOnnxFile(file.path, context)));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("unsupported ONNX op 'Mystery' (domain 'ai.onnx', "
                           "opset 17) at node 'relu' (node #1 of 2)"),
            std::string::npos)
      << errors[0];
}

TEST(OnnxImport, SupportsEveryOpOfTheDecoderAndDiffusionList) {
  std::vector<std::string> ops = hasten::getSupportedOnnxOps();
  for (const char *op :
       {"MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal",
        "Exp", "Log", "Erf", "Tanh", "Sigmoid", "Relu", "LeakyRelu", "Neg", "Abs",
        "Max", "Min", "Softmax", "LogSoftmax", "LayerNormalization",
        "InstanceNormalization", "ReduceMean", "ReduceSum", "ReduceMax", "ArgMax",
        "TopK", "Gather", "Reshape", "Flatten", "Transpose", "Concat", "Slice",
        "Split", "Squeeze", "Unsqueeze", "Where", "Equal", "Less", "Greater", "Not",
        "And", "Cast", "Shape", "Expand", "ConstantOfShape", "Range", "Trilu",
        "CumSum", "Identity", "Sin", "Cos", "Einsum", "Conv", "ConvTranspose",
        "Resize", "Pad", "Dropout", "Constant"})
    EXPECT_TRUE(std::find(ops.begin(), ops.end(), op) != ops.end()) << op;
}

} // namespace
