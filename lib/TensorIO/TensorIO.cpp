//===- TensorIO.cpp - .npy and ONNX TensorProto files ----------------------===//

#include "hasten/TensorIO.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

using namespace hasten;

namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool readFile(const std::string &path, std::string &data, std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  data = buffer.str();
  return true;
}

struct DtypeNames {
  hasten_dtype dtype;
  const char *npy;   // numpy descr
  int onnx;          // TensorProto data type
};
constexpr DtypeNames kDtypes[] = {
    {HASTEN_F32, "<f4", onnx::TensorProto::FLOAT},
    {HASTEN_F64, "<f8", onnx::TensorProto::DOUBLE},
    {HASTEN_F16, "<f2", onnx::TensorProto::FLOAT16},
    {HASTEN_BF16, "<V2", onnx::TensorProto::BFLOAT16},
    {HASTEN_BOOL, "|b1", onnx::TensorProto::BOOL},
    {HASTEN_I8, "|i1", onnx::TensorProto::INT8},
    {HASTEN_I16, "<i2", onnx::TensorProto::INT16},
    {HASTEN_I32, "<i4", onnx::TensorProto::INT32},
    {HASTEN_I64, "<i8", onnx::TensorProto::INT64},
    {HASTEN_U8, "|u1", onnx::TensorProto::UINT8},
    {HASTEN_U16, "<u2", onnx::TensorProto::UINT16},
    {HASTEN_U32, "<u4", onnx::TensorProto::UINT32},
    {HASTEN_U64, "<u8", onnx::TensorProto::UINT64},
};

const DtypeNames *byNpy(const std::string &descr) {
  for (const auto &d : kDtypes)
    if (descr == d.npy || (descr.size() == 3 && descr[0] == '=' && descr.substr(1) == std::string(d.npy).substr(1)))
      return &d;
  return nullptr;
}
const DtypeNames *byOnnx(int type) {
  for (const auto &d : kDtypes)
    if (d.onnx == type)
      return &d;
  return nullptr;
}
const DtypeNames *byDtype(hasten_dtype dtype) {
  for (const auto &d : kDtypes)
    if (d.dtype == dtype)
      return &d;
  return nullptr;
}

hasten_tensor *readNpy(const std::string &path, std::string &error) {
  std::string data;
  if (!readFile(path, data, error))
    return nullptr;
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) {
    error = path + ": not a .npy file";
    return nullptr;
  }
  int major = (unsigned char)data[6];
  size_t headerLen, headerStart;
  if (major == 1) {
    headerLen = (unsigned char)data[8] | ((unsigned char)data[9] << 8);
    headerStart = 10;
  } else {
    if (data.size() < 12) {
      error = path + ": truncated .npy header";
      return nullptr;
    }
    headerLen = 0;
    for (int i = 0; i < 4; ++i)
      headerLen |= (size_t)(unsigned char)data[8 + i] << (8 * i);
    headerStart = 12;
  }
  if (headerStart + headerLen > data.size()) {
    error = path + ": truncated .npy header";
    return nullptr;
  }
  std::string header = data.substr(headerStart, headerLen);
  auto field = [&](const std::string &key) -> std::string {
    size_t at = header.find("'" + key + "'");
    if (at == std::string::npos)
      return "";
    at = header.find(':', at) + 1;
    while (at < header.size() && header[at] == ' ')
      ++at;
    return header.substr(at);
  };
  std::string descr = field("descr");
  if (descr.size() < 2 || descr[0] != '\'') {
    error = path + ": .npy header has no descr";
    return nullptr;
  }
  descr = descr.substr(1, descr.find('\'', 1) - 1);
  const DtypeNames *dtype = byNpy(descr);
  if (!dtype) {
    error = path + ": unsupported .npy dtype '" + descr + "'";
    return nullptr;
  }
  if (field("fortran_order").rfind("True", 0) == 0) {
    error = path + ": Fortran-ordered .npy files are not supported";
    return nullptr;
  }
  std::string shapeText = field("shape");
  std::vector<int64_t> dims;
  size_t close = shapeText.find(')');
  std::string inner = shapeText.substr(1, close - 1);
  std::istringstream parts(inner);
  std::string part;
  while (std::getline(parts, part, ','))
    if (part.find_first_not_of(' ') != std::string::npos)
      dims.push_back(std::stoll(part));
  hasten_tensor *tensor = nullptr;
  if (hasten_tensor_create(dtype->dtype, (int)dims.size(), dims.data(), &tensor) != HASTEN_OK) {
    error = path + ": " + hasten_last_error();
    return nullptr;
  }
  size_t bytes = hasten_tensor_size_bytes(tensor);
  if (headerStart + headerLen + bytes > data.size()) {
    hasten_tensor_free(tensor);
    error = path + ": .npy data is shorter than its shape says";
    return nullptr;
  }
  std::memcpy(hasten_tensor_data(tensor), data.data() + headerStart + headerLen, bytes);
  return tensor;
}

bool writeNpy(const std::string &path, hasten_tensor *tensor, std::string &error) {
  const DtypeNames *dtype = byDtype(hasten_tensor_dtype(tensor));
  std::string shape = "(";
  for (int d = 0; d < hasten_tensor_rank(tensor); ++d)
    shape += std::to_string(hasten_tensor_dims(tensor)[d]) + ",";
  if (hasten_tensor_rank(tensor) > 1)
    shape.pop_back();
  shape += ")";
  std::string header = "{'descr': '" + std::string(dtype->npy) +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) {
    error = path + ": cannot write: " + std::strerror(errno);
    return false;
  }
  out.write("\x93NUMPY\x01\x00", 8);
  char len[2] = {(char)(header.size() & 0xff), (char)(header.size() >> 8)};
  out.write(len, 2);
  out << header;
  out.write(static_cast<const char *>(hasten_tensor_data(tensor)),
            hasten_tensor_size_bytes(tensor));
  return (bool)out;
}

hasten_tensor *readPb(const std::string &path, std::string &error) {
  std::string data;
  if (!readFile(path, data, error))
    return nullptr;
  onnx::TensorProto proto;
  if (!proto.ParseFromString(data)) {
    error = path + ": not a serialized ONNX TensorProto";
    return nullptr;
  }
  const DtypeNames *dtype = byOnnx(proto.data_type());
  if (!dtype) {
    error = path + ": unsupported TensorProto data type " + std::to_string(proto.data_type());
    return nullptr;
  }
  std::vector<int64_t> dims(proto.dims().begin(), proto.dims().end());
  hasten_tensor *tensor = nullptr;
  if (hasten_tensor_create(dtype->dtype, (int)dims.size(), dims.data(), &tensor) != HASTEN_OK) {
    error = path + ": " + hasten_last_error();
    return nullptr;
  }
  size_t count = hasten_tensor_num_elements(tensor);
  size_t elem = hasten_dtype_size(dtype->dtype);
  char *out = static_cast<char *>(hasten_tensor_data(tensor));
  auto mismatch = [&](size_t have) {
    hasten_tensor_free(tensor);
    error = path + ": TensorProto holds " + std::to_string(have) + " elements but its shape has " +
            std::to_string(count);
    return nullptr;
  };
  if (proto.has_raw_data()) {
    if (proto.raw_data().size() != count * elem)
      return mismatch(proto.raw_data().size() / elem);
    std::memcpy(out, proto.raw_data().data(), count * elem);
    return tensor;
  }
  auto copy = [&](const auto &field) -> bool {
    if ((size_t)field.size() != count)
      return false;
    for (size_t i = 0; i < count; ++i) {
      auto v = field.Get(i);
      switch (elem) {
      case 8: {
        if (dtype->dtype == HASTEN_F64) { double x = v; std::memcpy(out + i * 8, &x, 8); }
        else { int64_t x = (int64_t)v; std::memcpy(out + i * 8, &x, 8); }
        break;
      }
      case 4: {
        if (dtype->dtype == HASTEN_F32) { float x = v; std::memcpy(out + i * 4, &x, 4); }
        else { int32_t x = (int32_t)v; std::memcpy(out + i * 4, &x, 4); }
        break;
      }
      case 2: { int16_t x = (int16_t)v; std::memcpy(out + i * 2, &x, 2); break; }
      default: out[i] = (char)v;
      }
    }
    return true;
  };
  bool ok;
  switch (proto.data_type()) {
  case onnx::TensorProto::FLOAT: ok = copy(proto.float_data()); break;
  case onnx::TensorProto::DOUBLE: ok = copy(proto.double_data()); break;
  case onnx::TensorProto::INT64: ok = copy(proto.int64_data()); break;
  case onnx::TensorProto::UINT64:
  case onnx::TensorProto::UINT32: ok = copy(proto.uint64_data()); break;
  default: ok = copy(proto.int32_data()); break;
  }
  if (!ok) {
    hasten_tensor_free(tensor);
    error = path + ": TensorProto element count does not match its shape";
    return nullptr;
  }
  return tensor;
}

bool writePb(const std::string &path, hasten_tensor *tensor, const std::string &name,
             std::string &error) {
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(byDtype(hasten_tensor_dtype(tensor))->onnx);
  for (int d = 0; d < hasten_tensor_rank(tensor); ++d)
    proto.add_dims(hasten_tensor_dims(tensor)[d]);
  proto.set_raw_data(hasten_tensor_data(tensor), hasten_tensor_size_bytes(tensor));
  std::ofstream out(path, std::ios::binary);
  if (!out || !proto.SerializeToOstream(&out)) {
    error = path + ": cannot write: " + std::strerror(errno);
    return false;
  }
  return true;
}

} // namespace

hasten_tensor *hasten::readTensorFile(const std::string &path, std::string &error) {
  if (endsWith(path, ".npy"))
    return readNpy(path, error);
  if (endsWith(path, ".pb"))
    return readPb(path, error);
  error = path + ": unknown tensor file type (use .npy or .pb)";
  return nullptr;
}

bool hasten::writeTensorFile(const std::string &path, hasten_tensor *tensor,
                             const std::string &name, std::string &error) {
  if (endsWith(path, ".npy"))
    return writeNpy(path, tensor, error);
  if (endsWith(path, ".pb"))
    return writePb(path, tensor, name, error);
  error = path + ": unknown tensor file type (use .npy or .pb)";
  return false;
}
