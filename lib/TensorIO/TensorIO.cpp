//===- TensorIO.cpp - .npy and ONNX TensorProto files ----------------------===//

#include "hasten/TensorIO.h"

#include "hasten/CheckedSize.h"

#include <onnx/onnx-data_pb.h>
#include <onnx/onnx_pb.h>

#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

using namespace hasten;

namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Reads a regular file of at most `maxBytes` bytes (0: any size): device
/// files and FIFOs (/dev/zero, a pipe) would be read without end.
bool readFile(const std::string &path, uint64_t maxBytes, std::string &data, std::string &error) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
    return false;
  }
  if (maxBytes && uint64_t(st.st_size) > maxBytes) {
    error = path + ": " + std::to_string(st.st_size) + " bytes, more than the " +
            std::to_string(maxBytes) + " this tensor can take";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  data.resize(size_t(st.st_size));
  if (!in.read(data.data(), std::streamsize(data.size()))) {
    error = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
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

/// The header of a .npy file: a Python dict literal with exactly the keys
/// numpy writes, `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
/// Parsed strictly: anything else is an error, never an exception.
class NpyHeaderParser {
public:
  explicit NpyHeaderParser(std::string_view text) : text(text) {}

  bool parse(std::string &descr, bool &fortranOrder, std::vector<int64_t> &shape,
             std::string &error) {
    bool haveDescr = false, haveOrder = false, haveShape = false;
    if (!expect('{'))
      return fail("does not start with '{'", error);
    while (true) {
      skipSpaces();
      if (consume('}'))
        break;
      std::string key;
      if (!parseString(key) || !expect(':'))
        return fail("has a malformed key", error);
      skipSpaces();
      if (key == "descr" && !haveDescr) {
        haveDescr = parseString(descr);
        if (!haveDescr)
          return fail("has a malformed 'descr'", error);
      } else if (key == "fortran_order" && !haveOrder) {
        if (consumeWord("True"))
          fortranOrder = true;
        else if (consumeWord("False"))
          fortranOrder = false;
        else
          return fail("has a malformed 'fortran_order'", error);
        haveOrder = true;
      } else if (key == "shape" && !haveShape) {
        if (!parseShape(shape))
          return fail("has a malformed 'shape' (a tuple of non-negative integers)", error);
        haveShape = true;
      } else {
        return fail("has an unexpected or repeated key '" + key + "'", error);
      }
      skipSpaces();
      if (consume('}'))
        break;
      if (!consume(','))
        return fail("has a malformed dict", error);
    }
    skipSpaces();
    if (at != text.size())
      return fail("has text after its dict", error);
    if (!haveDescr || !haveOrder || !haveShape)
      return fail("lacks 'descr', 'fortran_order' or 'shape'", error);
    return true;
  }

private:
  bool fail(const std::string &what, std::string &error) {
    error = ".npy header " + what;
    return false;
  }
  void skipSpaces() {
    while (at < text.size() && (text[at] == ' ' || text[at] == '\n' || text[at] == '\t'))
      ++at;
  }
  bool consume(char c) {
    if (at < text.size() && text[at] == c) {
      ++at;
      return true;
    }
    return false;
  }
  bool expect(char c) {
    skipSpaces();
    return consume(c);
  }
  bool consumeWord(std::string_view word) {
    if (text.substr(at, word.size()) != word)
      return false;
    at += word.size();
    return true;
  }
  bool parseString(std::string &out) {
    skipSpaces();
    if (at >= text.size() || (text[at] != '\'' && text[at] != '"'))
      return false;
    char quote = text[at++];
    size_t end = text.find(quote, at);
    if (end == std::string_view::npos)
      return false;
    out = std::string(text.substr(at, end - at));
    at = end + 1;
    return true;
  }
  bool parseShape(std::vector<int64_t> &shape) {
    if (!consume('('))
      return false;
    while (true) {
      skipSpaces();
      if (consume(')'))
        return true;
      if (at >= text.size() || text[at] < '0' || text[at] > '9')
        return false;
      int64_t value = 0;
      while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
        if (__builtin_mul_overflow(value, 10, &value) ||
            __builtin_add_overflow(value, text[at] - '0', &value))
          return false;
        ++at;
      }
      // numpy writes `(3,)` and `(3, 4)`; `L` suffixes came from Python 2.
      consume('L');
      shape.push_back(value);
      skipSpaces();
      if (consume(')'))
        return true;
      if (!consume(','))
        return false;
    }
  }

  std::string_view text;
  size_t at = 0;
};

hasten_tensor *parseNpyData(std::string_view data, const std::string &name, std::string &error) {
  if (data.size() < 10 || data.substr(0, 6) != std::string_view("\x93NUMPY", 6)) {
    error = name + ": not a .npy file";
    return nullptr;
  }
  int major = (unsigned char)data[6];
  uint64_t headerLen, headerStart;
  if (major == 1) {
    headerLen = (unsigned char)data[8] | ((unsigned char)data[9] << 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) {
      error = name + ": truncated .npy header";
      return nullptr;
    }
    headerLen = 0;
    for (int i = 0; i < 4; ++i)
      headerLen |= uint64_t((unsigned char)data[8 + i]) << (8 * i);
    headerStart = 12;
  } else {
    error = name + ": unsupported .npy format version " + std::to_string(major);
    return nullptr;
  }
  if (headerLen > data.size() - headerStart) {
    error = name + ": truncated .npy header";
    return nullptr;
  }
  std::string descr;
  bool fortranOrder = false;
  std::vector<int64_t> dims;
  NpyHeaderParser parser(data.substr(headerStart, headerLen));
  if (!parser.parse(descr, fortranOrder, dims, error)) {
    error = name + ": " + error;
    return nullptr;
  }
  const DtypeNames *dtype = byNpy(descr);
  if (!dtype) {
    error = name + ": unsupported .npy dtype '" + descr + "'";
    return nullptr;
  }
  if (fortranOrder) {
    error = name + ": Fortran-ordered .npy files are not supported";
    return nullptr;
  }
  // The data must be there before anything is allocated for it.
  std::optional<uint64_t> bytes =
      checkedByteSize(dims.data(), dims.size(), hasten_dtype_size(dtype->dtype));
  uint64_t available = data.size() - headerStart - headerLen;
  if (!bytes || *bytes != available) {
    error = name + ": .npy data is " + std::to_string(available) + " bytes, but its shape (";
    for (size_t d = 0; d < dims.size(); ++d)
      error += (d ? ", " : "") + std::to_string(dims[d]);
    error += ") of " + descr + " needs " +
             (bytes ? std::to_string(*bytes) : std::string("more than can be addressed"));
    return nullptr;
  }
  hasten_tensor *tensor = nullptr;
  if (hasten_tensor_create(dtype->dtype, (int)dims.size(), dims.data(), &tensor) != HASTEN_OK) {
    error = name + ": " + hasten_last_error();
    return nullptr;
  }
  if (*bytes)
    std::memcpy(hasten_tensor_data(tensor), data.data() + headerStart + headerLen, *bytes);
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

hasten_tensor *fromTensorProto(const onnx::TensorProto &proto, const std::string &path,
                               std::string &error) {
  const DtypeNames *dtype = byOnnx(proto.data_type());
  if (!dtype) {
    error = path + ": unsupported TensorProto data type " + std::to_string(proto.data_type());
    return nullptr;
  }
  std::vector<int64_t> dims(proto.dims().begin(), proto.dims().end());
  std::optional<uint64_t> declared = checkedElementCount(dims.data(), dims.size());
  uint64_t have = proto.has_raw_data() ? proto.raw_data().size() / hasten_dtype_size(dtype->dtype)
                                       : uint64_t(std::max({proto.float_data_size(),
                                                            proto.double_data_size(),
                                                            proto.int64_data_size(),
                                                            proto.uint64_data_size(),
                                                            proto.int32_data_size()}));
  // The elements must be there before anything is allocated for them.
  if (!declared || !checkedByteSize(dims.data(), dims.size(), hasten_dtype_size(dtype->dtype)) ||
      *declared != have) {
    error = path + ": TensorProto holds " + std::to_string(have) + " elements but its shape has " +
            (declared ? std::to_string(*declared) : std::string("more than can be addressed"));
    return nullptr;
  }
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

hasten_tensor *parsePbData(std::string_view data, const std::string &path, std::string &error) {
  onnx::TensorProto proto;
  if (data.size() > size_t(INT_MAX) || !proto.ParseFromArray(data.data(), int(data.size()))) {
    error = path + ": not a serialized ONNX TensorProto";
    return nullptr;
  }
  return fromTensorProto(proto, path, error);
}

void toTensorProto(hasten_tensor *tensor, const std::string &name,
                   onnx::TensorProto &proto) {
  proto.set_name(name);
  proto.set_data_type(byDtype(hasten_tensor_dtype(tensor))->onnx);
  for (int d = 0; d < hasten_tensor_rank(tensor); ++d)
    proto.add_dims(hasten_tensor_dims(tensor)[d]);
  proto.set_raw_data(hasten_tensor_data(tensor), hasten_tensor_size_bytes(tensor));
}

template <typename Proto>
bool writeProto(const std::string &path, const Proto &proto, std::string &error) {
  std::ofstream out(path, std::ios::binary);
  if (!out || !proto.SerializeToOstream(&out)) {
    error = path + ": cannot write: " + std::strerror(errno);
    return false;
  }
  return true;
}

bool writePb(const std::string &path, hasten_tensor *tensor, const std::string &name,
             std::string &error) {
  onnx::TensorProto proto;
  toTensorProto(tensor, name, proto);
  return writeProto(path, proto, error);
}

hasten_tensor *newTensor(hasten_dtype dtype, const std::vector<int64_t> &dims,
                         const std::string &path, std::string &error) {
  hasten_tensor *tensor = nullptr;
  if (hasten_tensor_create(dtype, (int)dims.size(), dims.data(), &tensor) != HASTEN_OK) {
    error = path + ": " + hasten_last_error();
    return nullptr;
  }
  return tensor;
}

/// The shape table has a column per dimension of the highest-rank element
/// for every element: a cap keeps one high-rank element among many scalars
/// from costing more memory than the file backs.
constexpr int kMaxSequenceElementRank = 32;

/// The data and shape table of a sequence of `elements` (owned, freed
/// here) of `dtype`.
bool packSequence(std::vector<hasten_tensor *> &elements, hasten_dtype dtype,
                  const std::string &path, std::vector<hasten_tensor *> &parts,
                  std::string &error) {
  auto freeElements = [&] {
    for (hasten_tensor *e : elements)
      hasten_tensor_free(e);
    elements.clear();
  };
  int64_t width = 1, total = 0;
  for (size_t i = 0; i < elements.size(); ++i) {
    if (hasten_tensor_dtype(elements[i]) != dtype) {
      error = path + ": element " + std::to_string(i) + " is " +
              hasten_dtype_name(hasten_tensor_dtype(elements[i])) + " but the sequence holds " +
              hasten_dtype_name(dtype);
      freeElements();
      return false;
    }
    if (hasten_tensor_rank(elements[i]) > kMaxSequenceElementRank) {
      error = path + ": element " + std::to_string(i) + " has rank " +
              std::to_string(hasten_tensor_rank(elements[i])) + "; sequences hold ranks up to " +
              std::to_string(kMaxSequenceElementRank);
      freeElements();
      return false;
    }
    width = std::max<int64_t>(width, 1 + hasten_tensor_rank(elements[i]));
    total += (int64_t)hasten_tensor_num_elements(elements[i]);
  }
  hasten_tensor *data = newTensor(dtype, {total}, path, error);
  hasten_tensor *shapes =
      data ? newTensor(HASTEN_I64, {(int64_t)elements.size(), width}, path, error) : nullptr;
  if (!shapes) {
    hasten_tensor_free(data);
    freeElements();
    return false;
  }
  auto *out = static_cast<char *>(hasten_tensor_data(data));
  auto *table = static_cast<int64_t *>(hasten_tensor_data(shapes));
  for (size_t i = 0; i < elements.size(); ++i) {
    int64_t *row = table + i * width;
    int rank = hasten_tensor_rank(elements[i]);
    row[0] = rank;
    for (int64_t c = 1; c < width; ++c)
      row[c] = c <= rank ? hasten_tensor_dims(elements[i])[c - 1] : 1;
    size_t bytes = hasten_tensor_size_bytes(elements[i]);
    if (bytes)
      std::memcpy(out, hasten_tensor_data(elements[i]), bytes);
    out += bytes;
  }
  freeElements();
  parts.push_back(data);
  parts.push_back(shapes);
  return true;
}

/// The bytes ([dims..., width] u8, width the longest string's) and
/// lengths of a STRING TensorProto.
bool stringsFromProto(const onnx::TensorProto &proto, const std::string &path,
                      std::vector<hasten_tensor *> &parts, std::string &error) {
  if (proto.data_type() != onnx::TensorProto::STRING) {
    error = path + ": a TensorProto of strings is expected, got data type " +
            std::to_string(proto.data_type());
    return false;
  }
  std::vector<int64_t> dims(proto.dims().begin(), proto.dims().end());
  std::optional<uint64_t> count = checkedElementCount(dims.data(), dims.size());
  if (!count || *count != (uint64_t)proto.string_data_size()) {
    error = path + ": the TensorProto holds " + std::to_string(proto.string_data_size()) +
            " strings but its shape has " +
            (count ? std::to_string(*count) : std::string("more than can be addressed"));
    return false;
  }
  int64_t width = 0;
  uint64_t total = 0;
  for (const std::string &text : proto.string_data()) {
    width = std::max<int64_t>(width, (int64_t)text.size());
    total += text.size();
  }
  // Every row is as wide as the longest string: refuse a padding far
  // beyond what the file holds (one long string among many short ones).
  uint64_t padded = *count * (uint64_t)width;
  if (width > 0 && (padded / (uint64_t)width != *count || padded > 64 * (total + *count) + (1 << 20))) {
    error = path + ": " + std::to_string(*count) + " strings padded to the longest (" +
            std::to_string(width) + " bytes) would take far more memory than they hold";
    return false;
  }
  std::vector<int64_t> rowDims = dims;
  rowDims.push_back(width);
  hasten_tensor *bytes = newTensor(HASTEN_U8, rowDims, path, error);
  hasten_tensor *lengths = bytes ? newTensor(HASTEN_I64, dims, path, error) : nullptr;
  if (!lengths) {
    hasten_tensor_free(bytes);
    return false;
  }
  auto *out = static_cast<char *>(hasten_tensor_data(bytes));
  auto *length = static_cast<int64_t *>(hasten_tensor_data(lengths));
  if (hasten_tensor_size_bytes(bytes))
    std::memset(out, 0, hasten_tensor_size_bytes(bytes));
  for (int i = 0; i < proto.string_data_size(); ++i) {
    const std::string &text = proto.string_data(i);
    if (!text.empty())
      std::memcpy(out + i * width, text.data(), text.size());
    length[i] = (int64_t)text.size();
  }
  parts.push_back(bytes);
  parts.push_back(lengths);
  return true;
}

bool stringsToProto(hasten_tensor *bytes, hasten_tensor *lengths, const std::string &name,
                    onnx::TensorProto &proto, std::string &error) {
  int rank = hasten_tensor_rank(lengths);
  if (hasten_tensor_rank(bytes) != rank + 1 || hasten_tensor_dtype(lengths) != HASTEN_I64) {
    error = name + ": not a string tensor's bytes and lengths";
    return false;
  }
  proto.set_name(name);
  proto.set_data_type(onnx::TensorProto::STRING);
  for (int d = 0; d < rank; ++d)
    proto.add_dims(hasten_tensor_dims(lengths)[d]);
  int64_t width = hasten_tensor_dims(bytes)[rank];
  const auto *data = static_cast<const char *>(hasten_tensor_data(bytes));
  const auto *length = static_cast<const int64_t *>(hasten_tensor_data(lengths));
  for (size_t i = 0, n = hasten_tensor_num_elements(lengths); i < n; ++i) {
    if (length[i] < 0 || length[i] > width) {
      error = name + ": string " + std::to_string(i) + " has length " + std::to_string(length[i]) +
              " in rows of " + std::to_string(width) + " bytes";
      return false;
    }
    proto.add_string_data(std::string(data + i * width, length[i]));
  }
  return true;
}

bool sequenceFromProto(const onnx::SequenceProto &proto, hasten_dtype dtype,
                       const std::string &path, std::vector<hasten_tensor *> &parts,
                       std::string &error) {
  if (proto.elem_type() != onnx::SequenceProto::TENSOR &&
      !(proto.elem_type() == onnx::SequenceProto::UNDEFINED && proto.tensor_values_size() == 0)) {
    error = path + ": only sequences of tensors are supported";
    return false;
  }
  std::vector<hasten_tensor *> elements;
  for (const onnx::TensorProto &t : proto.tensor_values()) {
    hasten_tensor *e = fromTensorProto(t, path, error);
    if (!e) {
      for (hasten_tensor *x : elements)
        hasten_tensor_free(x);
      return false;
    }
    elements.push_back(e);
  }
  return packSequence(elements, dtype, path, parts, error);
}

/// The elements of a sequence's data and shape table (checked as
/// hasten_run checks inputs), as TensorProtos.
bool sequenceToProto(hasten_tensor *data, hasten_tensor *shapes, const std::string &name,
                     onnx::SequenceProto &proto, std::string &error) {
  proto.set_name(name);
  proto.set_elem_type(onnx::SequenceProto::TENSOR);
  if (hasten_tensor_rank(shapes) != 2 || hasten_tensor_dtype(shapes) != HASTEN_I64 ||
      hasten_tensor_rank(data) != 1) {
    error = name + ": not a sequence's data and shape table";
    return false;
  }
  int64_t count = hasten_tensor_dims(shapes)[0], width = hasten_tensor_dims(shapes)[1];
  const auto *table = static_cast<const int64_t *>(hasten_tensor_data(shapes));
  size_t elem = hasten_dtype_size(hasten_tensor_dtype(data));
  uint64_t offset = 0, available = hasten_tensor_num_elements(data);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t *row = table + i * width;
    if (row[0] < 0 || row[0] >= width) {
      error = name + ": element " + std::to_string(i) + " has a rank the table cannot hold";
      return false;
    }
    std::vector<int64_t> dims(row + 1, row + 1 + row[0]);
    std::optional<uint64_t> n = checkedElementCount(dims.data(), dims.size());
    if (!n || *n > available - offset) {
      error = name + ": element " + std::to_string(i) + " lies outside the sequence's data";
      return false;
    }
    onnx::TensorProto *t = proto.add_tensor_values();
    t->set_data_type(byDtype(hasten_tensor_dtype(data))->onnx);
    for (int64_t d : dims)
      t->add_dims(d);
    t->set_raw_data(static_cast<const char *>(hasten_tensor_data(data)) + offset * elem,
                    *n * elem);
    offset += *n;
  }
  return true;
}

} // namespace

hasten_tensor *hasten::readTensorFile(const std::string &path, std::string &error,
                                      uint64_t maxBytes) {
  bool npy = endsWith(path, ".npy");
  if (!npy && !endsWith(path, ".pb")) {
    error = path + ": unknown tensor file type (use .npy or .pb)";
    return nullptr;
  }
  std::string data;
  if (!readFile(path, maxBytes, data, error))
    return nullptr;
  return npy ? parseNpyData(data, path, error) : parsePbData(data, path, error);
}

hasten_tensor *hasten::parseNpy(std::string_view data, const std::string &name,
                                std::string &error) {
  return parseNpyData(data, name, error);
}

hasten_tensor *hasten::parsePb(std::string_view data, const std::string &name,
                               std::string &error) {
  return parsePbData(data, name, error);
}

bool hasten::readValueFile(const std::string &path, const ValueLayout &layout,
                           std::vector<hasten_tensor *> &parts, std::string &error,
                           uint64_t maxBytes) {
  parts.clear();
  if (!layout.optional && !layout.sequence && !layout.strings) {
    hasten_tensor *t = readTensorFile(path, error, maxBytes);
    if (t)
      parts.push_back(t);
    return t != nullptr;
  }
  if (!endsWith(path, ".pb")) {
    error = path + ": " +
            (layout.strings    ? "a string tensor"
             : layout.optional ? "an optional"
                               : "a sequence") +
            " is read from a .pb file (ONNX " +
            (layout.strings    ? "TensorProto"
             : layout.optional ? "OptionalProto"
                               : "SequenceProto") +
            ")";
    return false;
  }
  std::string data;
  if (!readFile(path, maxBytes, data, error))
    return false;
  return parseValuePb(data, layout, path, parts, error);
}

bool hasten::parseValuePb(std::string_view data, const ValueLayout &layout,
                          const std::string &path, std::vector<hasten_tensor *> &parts,
                          std::string &error) {
  parts.clear();
  if (layout.strings) {
    onnx::TensorProto proto;
    if (data.size() > size_t(INT_MAX) || !proto.ParseFromArray(data.data(), int(data.size()))) {
      error = path + ": not a serialized ONNX TensorProto";
      return false;
    }
    return stringsFromProto(proto, path, parts, error);
  }
  if (!layout.optional && !layout.sequence) {
    hasten_tensor *t = parsePbData(data, path, error);
    if (t)
      parts.push_back(t);
    return t != nullptr;
  }
  if (data.size() > size_t(INT_MAX)) {
    error = path + ": too large";
    return false;
  }
  auto fail = [&](const std::string &message) {
    for (hasten_tensor *t : parts)
      hasten_tensor_free(t);
    parts.clear();
    error = message;
    return false;
  };
  if (!layout.optional) {
    onnx::SequenceProto proto;
    if (!proto.ParseFromArray(data.data(), int(data.size())))
      return fail(path + ": not a serialized ONNX SequenceProto");
    return sequenceFromProto(proto, layout.dtype, path, parts, error);
  }
  onnx::OptionalProto proto;
  if (!proto.ParseFromArray(data.data(), int(data.size())))
    return fail(path + ": not a serialized ONNX OptionalProto");
  bool present = layout.sequence ? proto.has_sequence_value() : proto.has_tensor_value();
  if (!present && (proto.has_sequence_value() || proto.has_tensor_value()))
    return fail(path + ": the optional holds a " +
                (proto.has_sequence_value() ? "sequence" : "tensor") + " where the module takes " +
                (layout.sequence ? "a sequence" : "a tensor"));
  hasten_tensor *flag = newTensor(HASTEN_BOOL, {}, path, error);
  if (!flag)
    return false;
  *static_cast<uint8_t *>(hasten_tensor_data(flag)) = present ? 1 : 0;
  parts.push_back(flag);
  if (layout.sequence) {
    onnx::SequenceProto empty;
    std::vector<hasten_tensor *> value;
    if (!sequenceFromProto(present ? proto.sequence_value() : empty, layout.dtype, path, value,
                           error))
      return fail(error);
    parts.insert(parts.end(), value.begin(), value.end());
    return true;
  }
  hasten_tensor *value = nullptr;
  if (present) {
    value = fromTensorProto(proto.tensor_value(), path, error);
  } else {
    // Absent: a zero placeholder of the signature's shape (unknown sizes 0).
    std::vector<int64_t> dims = layout.placeholderDims;
    for (int64_t &d : dims)
      d = std::max<int64_t>(d, 0);
    value = newTensor(layout.dtype, dims, path, error);
    if (value)
      std::memset(hasten_tensor_data(value), 0, hasten_tensor_size_bytes(value));
  }
  if (!value)
    return fail(error);
  parts.push_back(value);
  return true;
}

bool hasten::writeValueFile(const std::string &path, const ValueLayout &layout,
                            hasten_tensor *const *parts, const std::string &name,
                            std::string &error) {
  if (!layout.optional && !layout.sequence && !layout.strings)
    return writeTensorFile(path, parts[0], name, error);
  if (!endsWith(path, ".pb")) {
    error = path + ": a sequence, an optional or strings are written as a .pb file";
    return false;
  }
  if (layout.strings) {
    onnx::TensorProto proto;
    if (!stringsToProto(parts[0], parts[1], name, proto, error))
      return false;
    return writeProto(path, proto, error);
  }
  if (!layout.optional) {
    onnx::SequenceProto proto;
    if (!sequenceToProto(parts[0], parts[1], name, proto, error))
      return false;
    return writeProto(path, proto, error);
  }
  onnx::OptionalProto proto;
  proto.set_name(name);
  proto.set_elem_type(layout.sequence ? onnx::OptionalProto::SEQUENCE
                                      : onnx::OptionalProto::TENSOR);
  bool present = *static_cast<const uint8_t *>(hasten_tensor_data(parts[0])) != 0;
  if (present && layout.sequence &&
      !sequenceToProto(parts[1], parts[2], name, *proto.mutable_sequence_value(), error))
    return false;
  if (present && !layout.sequence)
    toTensorProto(parts[1], name, *proto.mutable_tensor_value());
  return writeProto(path, proto, error);
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
