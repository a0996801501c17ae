//===- HastenPython.cpp - the runtime C API as the _hasten extension -------===//
//
// A thin binding: every call goes through include/hasten/runtime.h, every
// failure raises hasten.Error carrying the runtime's status and message.
// Arrays cross without copies where the layout allows: a C-contiguous input
// of the signature's dtype is wrapped in place, and outputs are numpy arrays
// over the runtime's own buffers. The Pythonic layer (keyword inputs,
// generate() as an iterator, compile()) is python/hasten/__init__.py.
//
//===----------------------------------------------------------------------===//

#include "hasten/runtime.h"

#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

struct HastenError : std::exception {
  HastenError(hasten_status status, std::string message)
      : status(status), message(std::move(message)) {}
  const char *what() const noexcept override { return message.c_str(); }
  hasten_status status;
  std::string message;
};

void check(hasten_status status) {
  if (status != HASTEN_OK)
    throw HastenError(status, hasten_last_error());
}

/// numpy's dtype for a hasten dtype (bf16 travels as uint16 bits: numpy
/// has no bfloat16).
py::dtype numpyDtype(hasten_dtype dtype) {
  switch (dtype) {
  case HASTEN_F32: return py::dtype::of<float>();
  case HASTEN_F64: return py::dtype::of<double>();
  case HASTEN_F16: return py::dtype("float16");
  case HASTEN_BF16: return py::dtype::of<uint16_t>();
  case HASTEN_BOOL: return py::dtype::of<bool>();
  case HASTEN_I8: return py::dtype::of<int8_t>();
  case HASTEN_I16: return py::dtype::of<int16_t>();
  case HASTEN_I32: return py::dtype::of<int32_t>();
  case HASTEN_I64: return py::dtype::of<int64_t>();
  case HASTEN_U8: return py::dtype::of<uint8_t>();
  case HASTEN_U16: return py::dtype::of<uint16_t>();
  case HASTEN_U32: return py::dtype::of<uint32_t>();
  case HASTEN_U64: return py::dtype::of<uint64_t>();
  default: break;
  }
  throw HastenError(HASTEN_ERROR_INVALID_ARGUMENT, "unknown dtype");
}

/// A loaded module, shared by the Python objects that need it alive
/// (sequences, pools), so that it is freed after them whatever order
/// Python collects them in.
struct ModuleHandle {
  hasten_module *module = nullptr;
  ~ModuleHandle() { hasten_module_free(module); }
};

class Module {
public:
  explicit Module(const std::string &path) : handle(std::make_shared<ModuleHandle>()) {
    check(hasten_module_load(path.c_str(), &handle->module));
  }
  hasten_module *get() const { return handle->module; }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (size_t i = 0; i < hasten_module_num_entries(get()); ++i)
      names.push_back(hasten_module_entry_name(get(), i));
    return names;
  }

  /// [(name, dtype name, shape with None for dynamic sizes, role)] of an
  /// entry's inputs (isOutput = false) or outputs.
  py::list signature(const std::string &entry, bool isOutput) const {
    size_t count = 0;
    check(hasten_entry_num_tensors(get(), entry.c_str(), isOutput, &count));
    py::list out;
    for (size_t i = 0; i < count; ++i) {
      int64_t dims[16];
      int rank = hasten_signature_dims(get(), entry.c_str(), isOutput, i, dims, 16);
      if (rank < 0)
        check(HASTEN_ERROR_INVALID_ARGUMENT);
      py::list shape;
      for (int d = 0; d < rank && d < 16; ++d) {
        const char *name = hasten_signature_dim_name(get(), entry.c_str(), isOutput, i, d);
        if (dims[d] >= 0)
          shape.append(dims[d]);
        else if (name && *name)
          shape.append(py::str(name));
        else
          shape.append(py::none());
      }
      hasten_tensor_role role = HASTEN_ROLE_NONE;
      hasten_signature_role(get(), entry.c_str(), isOutput, i, &role);
      out.append(py::make_tuple(
          hasten_signature_name(get(), entry.c_str(), isOutput, i),
          hasten_dtype_name(hasten_signature_dtype(get(), entry.c_str(), isOutput, i)),
          py::tuple(shape), static_cast<int>(role)));
    }
    return out;
  }

  /// Runs `entry` on arrays in signature order; returns its outputs.
  py::list run(const std::string &entry, const std::vector<py::array> &arrays) {
    size_t numInputs = 0, numOutputs = 0;
    check(hasten_entry_num_tensors(get(), entry.c_str(), 0, &numInputs));
    check(hasten_entry_num_tensors(get(), entry.c_str(), 1, &numOutputs));
    if (arrays.size() != numInputs)
      throw HastenError(HASTEN_ERROR_INVALID_ARGUMENT,
                        "entry '" + entry + "' takes " + std::to_string(numInputs) +
                            " inputs, got " + std::to_string(arrays.size()));
    std::vector<py::array> kept; // converted copies live until the run ends
    std::vector<hasten_tensor *> inputs;
    auto freeAll = [](std::vector<hasten_tensor *> &ts) {
      for (hasten_tensor *t : ts)
        hasten_tensor_free(t);
      ts.clear();
    };
    try {
      for (size_t i = 0; i < numInputs; ++i)
        inputs.push_back(wrapInput(entry, i, arrays[i], kept));
      std::vector<hasten_tensor *> outputs(numOutputs, nullptr);
      hasten_status status;
      {
        py::gil_scoped_release release;
        status = hasten_run(get(), entry.c_str(), inputs.data(), inputs.size(),
                            outputs.data(), outputs.size());
      }
      freeAll(inputs);
      check(status);
      py::list result;
      for (hasten_tensor *t : outputs)
        result.append(toArray(t));
      return result;
    } catch (...) {
      freeAll(inputs);
      throw;
    }
  }

  /// A tensor for input `index` of `entry` over `array` (converted, into
  /// `kept`, when its dtype or layout differs).
  hasten_tensor *wrapInput(const std::string &entry, size_t index, py::array a,
                           std::vector<py::array> &kept) const {
    hasten_dtype dtype = hasten_signature_dtype(get(), entry.c_str(), 0, index);
    py::dtype want = numpyDtype(dtype);
    bool exact = a.dtype().is(want) || a.dtype().equal(want);
    if (!exact || !(a.flags() & py::array::c_style)) {
      // Same kind of number: convert (a copy). Bool <-> number or
      // float -> int would silently change values: refuse.
      char have = a.dtype().kind(), need = want.kind();
      bool compatible = have == need || (need == 'f' && (have == 'i' || have == 'u')) ||
                        (need == 'i' && have == 'u') || (need == 'u' && have == 'i');
      if (!exact && !compatible)
        throw HastenError(HASTEN_ERROR_INVALID_ARGUMENT,
                          "entry '" + entry + "': input '" +
                              hasten_signature_name(get(), entry.c_str(), 0, index) +
                              "' must be " + hasten_dtype_name(dtype) + ", got numpy " +
                              std::string(py::str(a.dtype())));
      a = py::array::ensure(a.attr("astype")(want), py::array::c_style);
      kept.push_back(a);
    }
    std::vector<int64_t> dims(a.shape(), a.shape() + a.ndim());
    hasten_tensor *t = nullptr;
    check(hasten_tensor_wrap(dtype, static_cast<int>(dims.size()), dims.data(),
                             const_cast<void *>(a.data()), &t));
    return t;
  }

  /// An owned tensor as an array that owns it (no copy).
  static py::array toArray(hasten_tensor *t) {
    py::capsule owner(t, [](void *p) { hasten_tensor_free(static_cast<hasten_tensor *>(p)); });
    std::vector<py::ssize_t> shape(hasten_tensor_dims(t),
                                   hasten_tensor_dims(t) + hasten_tensor_rank(t));
    return py::array(numpyDtype(hasten_tensor_dtype(t)), shape, hasten_tensor_data(t), owner);
  }

  /// Named inputs of `entry` as tensors, for the sampler calls.
  struct NamedInputs {
    std::vector<std::string> names;
    std::vector<const char *> pointers;
    std::vector<hasten_tensor *> tensors;
    std::vector<py::array> kept;
    ~NamedInputs() {
      for (hasten_tensor *t : tensors)
        hasten_tensor_free(t);
    }
  };

  void bindNamed(const std::string &entry, const py::dict &inputs, NamedInputs &out) const {
    size_t count = 0;
    check(hasten_entry_num_tensors(get(), entry.c_str(), 0, &count));
    for (auto item : inputs) {
      std::string name = py::str(item.first);
      size_t index = count;
      for (size_t i = 0; i < count; ++i)
        if (name == hasten_signature_name(get(), entry.c_str(), 0, i))
          index = i;
      if (index == count)
        throw HastenError(HASTEN_ERROR_INVALID_ARGUMENT,
                          "entry '" + entry + "' has no input named '" + name + "'");
      out.names.push_back(name);
      out.tensors.push_back(wrapInput(entry, index, py::array::ensure(item.second), out.kept));
    }
    for (const std::string &name : out.names)
      out.pointers.push_back(name.c_str());
  }

  /// The entry of `kind` (a sampler's), or `entry` when given.
  std::string samplerEntry(const std::optional<std::string> &entry, hasten_entry_kind kind) const {
    if (entry)
      return *entry;
    const char *name = nullptr;
    check(hasten_find_entry(get(), nullptr, kind, &name));
    return name;
  }

  /// hasten_generate_sample: (sample, {"steps", "seconds"}).
  py::tuple generateSample(const py::dict &inputs, uint64_t seed,
                           const std::optional<std::string> &entry) {
    std::string name = samplerEntry(entry, HASTEN_ENTRY_GENERATE);
    NamedInputs named;
    bindNamed(name, inputs, named);
    hasten_tensor *sample = nullptr;
    hasten_sample_stats stats{sizeof(hasten_sample_stats), 0, 0};
    hasten_status status;
    {
      py::gil_scoped_release release;
      status = hasten_generate_sample(get(), name.c_str(), seed, named.pointers.data(),
                                      named.tensors.data(), named.tensors.size(), &sample, &stats);
    }
    check(status);
    py::dict info;
    info["steps"] = stats.steps;
    info["seconds"] = stats.seconds;
    return py::make_tuple(toArray(sample), info);
  }

  std::shared_ptr<ModuleHandle> handle;
};

/// A stream-batched sampler's frames in flight (hasten_sample_stream).
class SampleStream {
public:
  SampleStream(const Module &module, uint64_t seed, const std::optional<std::string> &entry)
      : module(module), name(module.samplerEntry(entry, HASTEN_ENTRY_SAMPLER_STREAM)) {
    check(hasten_sample_stream_create(module.get(), name.c_str(), seed, &stream));
  }
  ~SampleStream() { hasten_sample_stream_free(stream); }

  /// One frame in; the finished frame out, or None while the stream fills.
  py::object push(const py::dict &inputs) {
    Module::NamedInputs named;
    module.bindNamed(name, inputs, named);
    hasten_tensor *frame = nullptr;
    hasten_status status;
    {
      py::gil_scoped_release release;
      status = hasten_sample_stream_push(stream, named.pointers.data(), named.tensors.data(),
                                         named.tensors.size(), &frame);
    }
    check(status);
    if (!frame)
      return py::none();
    return Module::toArray(frame);
  }
  int64_t depth() const { return hasten_sample_stream_depth(stream); }

private:
  Module module; // keeps the module alive
  std::string name;
  hasten_sample_stream *stream = nullptr;
};

class Sequence {
public:
  Sequence(const Module &module, const std::optional<std::string> &model)
      : owner(module.handle) {
    if (model)
      check(hasten_sequence_create_for_model(module.get(), model->c_str(), nullptr, &seq));
    else
      check(hasten_sequence_create(module.get(), nullptr, &seq));
  }
  Sequence(std::shared_ptr<ModuleHandle> owner, hasten_sequence *seq)
      : owner(std::move(owner)), seq(seq) {}
  ~Sequence() { hasten_sequence_free(seq); }

  py::array_t<float> append(const std::vector<int64_t> &tokens) {
    py::array_t<float> logits(hasten_sequence_vocab_size(seq));
    hasten_status status;
    {
      py::gil_scoped_release release;
      status = hasten_sequence_append(seq, tokens.data(), tokens.size(), logits.mutable_data());
    }
    check(status);
    return logits;
  }
  py::array_t<float> verify(const std::vector<int64_t> &tokens) {
    py::array_t<float> logits({static_cast<py::ssize_t>(tokens.size()),
                               static_cast<py::ssize_t>(hasten_sequence_vocab_size(seq))});
    hasten_status status;
    {
      py::gil_scoped_release release;
      status = hasten_sequence_verify(seq, tokens.data(), tokens.size(), logits.mutable_data());
    }
    check(status);
    return logits;
  }
  std::vector<int64_t> tokens() const {
    const int64_t *t = hasten_sequence_tokens(seq);
    return t ? std::vector<int64_t>(t, t + hasten_sequence_length(seq)) : std::vector<int64_t>();
  }

  /// hasten_generate (or the speculative one with `draft`); `onToken` is
  /// called with each token, holding the GIL, and stops the generation by
  /// returning True. Returns (tokens, stats dict).
  py::tuple generate(const std::vector<int64_t> &prompt, int64_t maxNewTokens,
                     float temperature, int32_t topK, float topP, uint64_t seed,
                     const std::vector<int64_t> &stopTokens,
                     const std::optional<py::function> &onToken, Sequence *draft,
                     bool speculative, int32_t specK) {
    hasten_generate_options options;
    hasten_generate_options_init(&options);
    options.max_new_tokens = maxNewTokens;
    options.temperature = temperature;
    options.top_k = topK;
    options.top_p = topP;
    options.seed = seed;
    options.stop_tokens = stopTokens.data();
    options.num_stop_tokens = stopTokens.size();
    struct Callback {
      const py::function *fn;
      std::optional<py::error_already_set> error;
    } callback{onToken ? &*onToken : nullptr, std::nullopt};
    if (onToken) {
      options.user_data = &callback;
      options.on_token = [](int64_t token, void *data) -> int {
        auto *cb = static_cast<Callback *>(data);
        py::gil_scoped_acquire acquire;
        try {
          return py::bool_((*cb->fn)(token)) ? 1 : 0;
        } catch (py::error_already_set &e) {
          cb->error = std::move(e);
          return 1;
        }
      };
    }
    int64_t capacity = hasten_sequence_capacity(seq);
    std::vector<int64_t> generated(std::clamp<int64_t>(maxNewTokens, 0, capacity + 1));
    hasten_generate_stats stats{};
    stats.struct_size = sizeof(stats);
    hasten_speculation_stats spec{};
    spec.struct_size = sizeof(spec);
    hasten_speculation_options specOptions;
    hasten_speculation_options_init(&specOptions);
    specOptions.k = specK;
    hasten_status status;
    {
      py::gil_scoped_release release;
      status = speculative ? hasten_generate_speculative(seq, draft ? draft->seq : nullptr,
                                                         prompt.data(), prompt.size(), &options,
                                                         &specOptions, generated.data(), &stats,
                                                         &spec)
                           : hasten_generate(seq, prompt.data(), prompt.size(), &options,
                                             generated.data(), &stats);
    }
    if (callback.error)
      throw std::move(*callback.error);
    check(status);
    generated.resize(std::max<int64_t>(stats.generated_tokens, 0));
    py::dict info;
    info["prompt_tokens"] = stats.prompt_tokens;
    info["generated_tokens"] = stats.generated_tokens;
    info["prefill_seconds"] = stats.prefill_seconds;
    info["time_to_first_token_seconds"] = stats.time_to_first_token_seconds;
    info["decode_seconds"] = stats.decode_seconds;
    info["stopped_by_token"] = stats.stopped_by_token != 0;
    if (speculative) {
      info["speculation_steps"] = spec.steps;
      info["drafted"] = spec.drafted;
      info["accepted"] = spec.accepted;
    }
    return py::make_tuple(generated, info);
  }

  std::shared_ptr<ModuleHandle> owner;
  hasten_sequence *seq = nullptr;
};

class Tokenizer {
public:
  explicit Tokenizer(const std::string &path) { check(hasten_tokenizer_load(path.c_str(), &tok)); }
  ~Tokenizer() { hasten_tokenizer_free(tok); }
  std::vector<int64_t> encode(const std::string &text, bool addSpecial) const {
    size_t count = 0;
    check(hasten_tokenizer_encode(tok, text.data(), text.size(), addSpecial, nullptr, 0,
                                  &count));
    std::vector<int64_t> ids(count);
    check(hasten_tokenizer_encode(tok, text.data(), text.size(), addSpecial, ids.data(),
                                  ids.size(), &count));
    return ids;
  }
  py::bytes decodeBytes(const std::vector<int64_t> &ids, bool skipSpecial) const {
    size_t length = 0;
    check(hasten_tokenizer_decode(tok, ids.data(), ids.size(), skipSpecial, nullptr, 0, &length));
    std::string text(length, '\0');
    check(hasten_tokenizer_decode(tok, ids.data(), ids.size(), skipSpecial, text.data(),
                                  text.size(), &length));
    return py::bytes(text);
  }
  std::string applyChatTemplate(const std::vector<std::pair<std::string, std::string>> &messages,
                                bool addGenerationPrompt) const {
    std::vector<const char *> roles, contents;
    for (const auto &[role, content] : messages) {
      roles.push_back(role.c_str());
      contents.push_back(content.c_str());
    }
    size_t length = 0;
    check(hasten_tokenizer_apply_chat_template(tok, roles.data(), contents.data(), roles.size(),
                                               addGenerationPrompt, nullptr, 0, &length));
    std::string text(length, '\0');
    check(hasten_tokenizer_apply_chat_template(tok, roles.data(), contents.data(), roles.size(),
                                               addGenerationPrompt, text.data(), text.size(),
                                               &length));
    return text;
  }
  hasten_tokenizer *tok = nullptr;
};

/// A text stream, holding its tokenizer's Python object alive.
/// Released text as a Python str; bytes that are not UTF-8 (a model may
/// emit any token) show as U+FFFD rather than raising.
py::str utf8(const char *text, size_t length) {
  PyObject *object = PyUnicode_DecodeUTF8(text, static_cast<Py_ssize_t>(length), "replace");
  if (!object)
    throw py::error_already_set();
  return py::reinterpret_steal<py::str>(object);
}

class TextStream {
public:
  TextStream(py::object tokenizerObject, bool skipSpecial) : keep(std::move(tokenizerObject)) {
    check(hasten_text_stream_create(keep.cast<Tokenizer &>().tok, skipSpecial, &stream));
  }
  ~TextStream() { hasten_text_stream_free(stream); }
  py::str push(int64_t token) {
    const char *text;
    size_t length;
    check(hasten_text_stream_push(stream, token, &text, &length));
    return utf8(text, length);
  }
  py::str finish() {
    const char *text;
    size_t length;
    check(hasten_text_stream_finish(stream, &text, &length));
    return utf8(text, length);
  }
  py::object keep;
  hasten_text_stream *stream = nullptr;
};

} // namespace

PYBIND11_MODULE(_hasten, m) {
  m.doc() = "hasten runtime bindings (see the hasten package for the API)";
  static py::exception<HastenError> error(m, "Error");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p)
        std::rethrow_exception(p);
    } catch (const HastenError &e) {
      py::object instance = py::reinterpret_borrow<py::object>(error.ptr())(e.message);
      instance.attr("status") = static_cast<int>(e.status);
      PyErr_SetObject(error.ptr(), instance.ptr());
    }
  });
  m.attr("API_VERSION") = HASTEN_RUNTIME_API_VERSION;
  m.def("runtime_api_version", &hasten_runtime_api_version);
  m.def("set_num_threads", [](int n) { check(hasten_set_num_threads(n)); });
  m.def("get_num_threads", &hasten_get_num_threads);
  m.def("kernel_isa", &hasten_runtime_kernel_isa);

  py::class_<Module>(m, "Module")
      .def(py::init<const std::string &>())
      .def("entries", &Module::entries)
      .def("signature", &Module::signature)
      .def("run", &Module::run)
      .def("prepare", [](Module &self) {
        hasten_status status;
        {
          py::gil_scoped_release release;
          status = hasten_module_prepare(self.get());
        }
        check(status);
      })
      .def("generate_sample", &Module::generateSample, py::arg("inputs"), py::arg("seed") = 0,
           py::arg("entry") = py::none())
      .def("sampler_steps",
           [](const Module &self, const std::string &entry) {
             return hasten_entry_sampler_steps(self.get(), entry.c_str());
           })
      .def("last_threads",
           [](Module &self, const std::string &entry) {
             return hasten_entry_last_threads(self.get(), entry.c_str());
           },
           py::arg("entry"),
           "The threads the entry's last call ran with (fewer than the pool where that "
           "measured faster; 0 before any call)")
      .def("is_decoder", [](const Module &self) { return hasten_module_is_decoder(self.get()) != 0; })
      .def("vocab_size", [](const Module &self) { return hasten_module_vocab_size(self.get()); })
      .def("kv_capacity", [](const Module &self) { return hasten_module_kv_capacity(self.get()); })
      .def("weight_bytes", [](const Module &self) { return hasten_module_weight_bytes(self.get()); })
      .def("cpu", [](const Module &self) { return std::string(hasten_module_cpu(self.get())); })
      .def("compiler_version",
           [](const Module &self) { return std::string(hasten_module_compiler_version(self.get())); })
      .def("has_draft", [](const Module &self) {
        const char *entry = nullptr;
        return hasten_find_entry(self.get(), "draft", HASTEN_ENTRY_DECODE, &entry) == HASTEN_OK;
      });

  py::class_<SampleStream>(m, "SampleStream")
      .def(py::init<const Module &, uint64_t, const std::optional<std::string> &>(),
           py::arg("module"), py::arg("seed") = 0, py::arg("entry") = py::none())
      .def("push", &SampleStream::push)
      .def("depth", &SampleStream::depth);
  m.def("gaussian_noise", [](uint64_t seed, uint64_t stream, size_t count) {
    py::array_t<float> out(count);
    hasten_gaussian_noise(seed, stream, out.mutable_data(), count);
    return out;
  });

  py::class_<Sequence>(m, "Sequence")
      .def(py::init<const Module &, const std::optional<std::string> &>())
      .def("append", &Sequence::append)
      .def("verify", &Sequence::verify)
      .def("tokens", &Sequence::tokens)
      .def("__len__", [](const Sequence &s) { return hasten_sequence_length(s.seq); })
      .def("capacity", [](const Sequence &s) { return hasten_sequence_capacity(s.seq); })
      .def("vocab_size", [](const Sequence &s) { return hasten_sequence_vocab_size(s.seq); })
      .def("truncate", [](Sequence &s, int64_t n) { check(hasten_sequence_truncate(s.seq, n)); })
      .def("reset", [](Sequence &s) { check(hasten_sequence_reset(s.seq)); })
      .def("fork", [](const Sequence &s) {
        hasten_sequence *copy = nullptr;
        check(hasten_sequence_fork(s.seq, &copy));
        return std::make_unique<Sequence>(s.owner, copy);
      })
      .def("generate", &Sequence::generate);

  py::class_<Tokenizer>(m, "Tokenizer")
      .def(py::init<const std::string &>())
      .def("encode", &Tokenizer::encode)
      .def("decode_bytes", &Tokenizer::decodeBytes)
      .def("apply_chat_template", &Tokenizer::applyChatTemplate)
      .def_property_readonly("kind", [](const Tokenizer &t) { return std::string(hasten_tokenizer_kind(t.tok)); })
      .def_property_readonly("vocab_size", [](const Tokenizer &t) { return hasten_tokenizer_vocab_size(t.tok); })
      .def_property_readonly("bos_id", [](const Tokenizer &t) { return hasten_tokenizer_bos_id(t.tok); })
      .def_property_readonly("eos_id", [](const Tokenizer &t) { return hasten_tokenizer_eos_id(t.tok); })
      .def_property_readonly("chat_template", [](const Tokenizer &t) {
        return std::string(hasten_tokenizer_chat_template(t.tok));
      })
      .def("token_id", [](const Tokenizer &t, const std::string &token) {
        return hasten_tokenizer_token_id(t.tok, token.c_str());
      });

  py::class_<TextStream>(m, "TextStream")
      .def(py::init<py::object, bool>())
      .def("push", &TextStream::push)
      .def("finish", &TextStream::finish);
}
