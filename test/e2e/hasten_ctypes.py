"""ctypes bindings to the hasten runtime's generation API, for tests."""
import ctypes
import os

import numpy as np


class HastenError(RuntimeError):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class GenerateOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("max_new_tokens", ctypes.c_int64),
                ("temperature", ctypes.c_float), ("top_k", ctypes.c_int32),
                ("top_p", ctypes.c_float), ("seed", ctypes.c_uint64),
                ("stop_tokens", ctypes.c_void_p), ("num_stop_tokens", ctypes.c_size_t),
                ("on_token", ctypes.c_void_p), ("user_data", ctypes.c_void_p)]


class GenerateStats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("prompt_tokens", ctypes.c_int64),
                ("generated_tokens", ctypes.c_int64), ("prefill_seconds", ctypes.c_double),
                ("time_to_first_token_seconds", ctypes.c_double),
                ("decode_seconds", ctypes.c_double), ("stopped_by_token", ctypes.c_int)]


class SpeculationOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("k", ctypes.c_int32),
                ("fallback_threshold", ctypes.c_float), ("rollback_threshold", ctypes.c_float),
                ("ngram_min", ctypes.c_int32), ("ngram_max", ctypes.c_int32),
                ("rapid_context", ctypes.c_int64), ("rapid_chunk", ctypes.c_int32)]


class SpeculationStats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("steps", ctypes.c_int64),
                ("drafted", ctypes.c_int64), ("accepted", ctypes.c_int64),
                ("draft_context_tokens", ctypes.c_int64), ("draft_seconds", ctypes.c_double),
                ("verify_seconds", ctypes.c_double), ("last_k", ctypes.c_int32),
                ("fused_steps", ctypes.c_int64)]


class SampleStats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("steps", ctypes.c_int64),
                ("seconds", ctypes.c_double)]


# hasten_dtype values, in order.
_DTYPES = [np.float32, np.float64, np.float16, None, np.bool_, np.int8, np.int16, np.int32,
           np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


class Runtime:
    def __init__(self, lib_dir):
        self.lib = ctypes.CDLL(os.path.join(lib_dir, "libhasten_runtime.so"))
        L = self.lib
        vp, i64, sz = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t
        L.hasten_last_error.restype = ctypes.c_char_p
        L.hasten_module_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(vp)]
        L.hasten_module_free.argtypes = [vp]
        for name in ("hasten_module_vocab_size", "hasten_module_kv_capacity",
                     "hasten_module_kv_block_size"):
            getattr(L, name).argtypes = [vp]
            getattr(L, name).restype = i64
        L.hasten_module_weight_bytes.argtypes = [vp]
        L.hasten_module_weight_bytes.restype = ctypes.c_uint64
        L.hasten_module_num_weights.argtypes = [vp]
        L.hasten_module_num_weights.restype = sz
        for name in ("name", "format"):
            getattr(L, "hasten_module_weight_" + name).argtypes = [vp, sz]
            getattr(L, "hasten_module_weight_" + name).restype = ctypes.c_char_p
        L.hasten_module_weight_size.argtypes = [vp, sz]
        L.hasten_module_weight_size.restype = ctypes.c_uint64
        L.hasten_module_weights_path.argtypes = [vp]
        L.hasten_module_weights_path.restype = ctypes.c_char_p
        L.hasten_module_verify_weights.argtypes = [vp]
        L.hasten_sequence_create.argtypes = [vp, vp, ctypes.POINTER(vp)]
        L.hasten_sequence_free.argtypes = [vp]
        L.hasten_sequence_fork.argtypes = [vp, ctypes.POINTER(vp)]
        L.hasten_sequence_truncate.argtypes = [vp, i64]
        L.hasten_sequence_reset.argtypes = [vp]
        L.hasten_sequence_length.argtypes = [vp]
        L.hasten_sequence_length.restype = i64
        L.hasten_sequence_append.argtypes = [vp, ctypes.POINTER(i64), sz,
                                             ctypes.POINTER(ctypes.c_float)]
        L.hasten_sequence_create_for_model.argtypes = [vp, ctypes.c_char_p, vp,
                                                       ctypes.POINTER(vp)]
        L.hasten_sequence_verify.argtypes = [vp, ctypes.POINTER(i64), sz,
                                             ctypes.POINTER(ctypes.c_float)]
        L.hasten_sequence_tokens.argtypes = [vp]
        L.hasten_sequence_kv_block_on_device.argtypes = [vp, i64]
        L.hasten_sequence_kv_block_on_device.restype = ctypes.c_int
        L.hasten_sequence_tokens.restype = ctypes.POINTER(i64)
        L.hasten_generate_options_init.argtypes = [ctypes.POINTER(GenerateOptions)]
        L.hasten_speculation_options_init.argtypes = [ctypes.POINTER(SpeculationOptions)]
        L.hasten_generate.argtypes = [vp, ctypes.POINTER(i64), sz,
                                      ctypes.POINTER(GenerateOptions), ctypes.POINTER(i64),
                                      ctypes.POINTER(GenerateStats)]
        L.hasten_generate_speculative.argtypes = [
            vp, vp, ctypes.POINTER(i64), sz, ctypes.POINTER(GenerateOptions),
            ctypes.POINTER(SpeculationOptions), ctypes.POINTER(i64),
            ctypes.POINTER(GenerateStats), ctypes.POINTER(SpeculationStats)]
        L.hasten_kv_pool_create.argtypes = [vp, i64, ctypes.POINTER(vp)]
        L.hasten_kv_pool_free.argtypes = [vp]
        L.hasten_kv_pool_free_blocks.argtypes = [vp]
        L.hasten_kv_pool_free_blocks.restype = i64
        L.hasten_tokenizer_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(vp)]
        L.hasten_tokenizer_free.argtypes = [vp]
        L.hasten_tokenizer_kind.argtypes = [vp]
        L.hasten_tokenizer_kind.restype = ctypes.c_char_p
        for name in ("vocab_size", "bos_id", "eos_id"):
            getattr(L, "hasten_tokenizer_" + name).argtypes = [vp]
            getattr(L, "hasten_tokenizer_" + name).restype = i64
        L.hasten_tokenizer_token_id.argtypes = [vp, ctypes.c_char_p]
        L.hasten_tokenizer_token_id.restype = i64
        L.hasten_tokenizer_encode.argtypes = [vp, ctypes.c_char_p, sz, ctypes.c_int,
                                              ctypes.POINTER(i64), sz, ctypes.POINTER(sz)]
        L.hasten_tokenizer_decode.argtypes = [vp, ctypes.POINTER(i64), sz, ctypes.c_int,
                                              ctypes.c_char_p, sz, ctypes.POINTER(sz)]
        L.hasten_tokenizer_apply_chat_template.argtypes = [
            vp, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p), sz,
            ctypes.c_int, ctypes.c_char_p, sz, ctypes.POINTER(sz)]
        L.hasten_text_stream_create.argtypes = [vp, ctypes.c_int, ctypes.POINTER(vp)]
        L.hasten_text_stream_free.argtypes = [vp]
        L.hasten_text_stream_push.argtypes = [vp, i64, ctypes.POINTER(ctypes.c_char_p),
                                              ctypes.POINTER(sz)]
        L.hasten_text_stream_finish.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p),
                                                ctypes.POINTER(sz)]

        L.hasten_tensor_wrap.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64), vp,
                                         ctypes.POINTER(vp)]
        L.hasten_tensor_free.argtypes = [vp]
        L.hasten_tensor_dtype.argtypes = [vp]
        L.hasten_tensor_rank.argtypes = [vp]
        L.hasten_tensor_dims.argtypes = [vp]
        L.hasten_tensor_dims.restype = ctypes.POINTER(i64)
        L.hasten_tensor_data.argtypes = [vp]
        L.hasten_tensor_data.restype = vp
        L.hasten_tensor_size_bytes.argtypes = [vp]
        L.hasten_tensor_size_bytes.restype = sz
        L.hasten_run.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(vp), sz,
                                 ctypes.POINTER(vp), sz]
        L.hasten_entry_num_tensors.argtypes = [vp, ctypes.c_char_p, ctypes.c_int,
                                               ctypes.POINTER(sz)]
        L.hasten_entry_sampler_steps.argtypes = [vp, ctypes.c_char_p]
        L.hasten_entry_sampler_steps.restype = i64
        L.hasten_generate_sample.argtypes = [
            vp, ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(vp), sz, ctypes.POINTER(vp), ctypes.POINTER(SampleStats)]
        L.hasten_gaussian_noise.argtypes = [ctypes.c_uint64, ctypes.c_uint64,
                                            ctypes.POINTER(ctypes.c_float), sz]
        L.hasten_gaussian_noise.restype = None
        L.hasten_sample_stream_create.argtypes = [vp, ctypes.c_char_p, ctypes.c_uint64,
                                                  ctypes.POINTER(vp)]
        L.hasten_sample_stream_free.argtypes = [vp]
        L.hasten_sample_stream_depth.argtypes = [vp]
        L.hasten_sample_stream_depth.restype = i64
        L.hasten_sample_stream_push.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p),
                                                ctypes.POINTER(vp), sz, ctypes.POINTER(vp)]

    def wrap(self, array):
        """A hasten_tensor borrowing `array` (kept alive by the caller)."""
        dtype = _DTYPES.index(array.dtype.type)
        dims = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
        handle = ctypes.c_void_p()
        self.check(self.lib.hasten_tensor_wrap(dtype, array.ndim, dims,
                                               array.ctypes.data_as(ctypes.c_void_p),
                                               ctypes.byref(handle)))
        return handle

    def take(self, handle):
        """A numpy copy of an owned hasten_tensor, which is freed."""
        L = self.lib
        rank = L.hasten_tensor_rank(handle)
        dims = [L.hasten_tensor_dims(handle)[d] for d in range(rank)]
        dtype = _DTYPES[L.hasten_tensor_dtype(handle)]
        size = L.hasten_tensor_size_bytes(handle)
        data = ctypes.string_at(L.hasten_tensor_data(handle), size)
        L.hasten_tensor_free(handle)
        return np.frombuffer(data, dtype=dtype).reshape(dims).copy()

    def gaussian_noise(self, seed, stream, count):
        out = np.empty(count, np.float32)
        self.lib.hasten_gaussian_noise(seed, stream,
                                       out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), count)
        return out

    def check(self, status):
        if status:
            raise HastenError(status, self.lib.hasten_last_error().decode())

    def load(self, path):
        handle = ctypes.c_void_p()
        self.check(self.lib.hasten_module_load(path.encode(), ctypes.byref(handle)))
        return Module(self, handle)


    def tokenizer(self, path):
        handle = ctypes.c_void_p()
        self.check(self.lib.hasten_tokenizer_load(path.encode(), ctypes.byref(handle)))
        return Tokenizer(self, handle)


class Tokenizer:
    def __init__(self, rt, handle):
        self.rt, self.handle, L = rt, handle, rt.lib
        self.kind = L.hasten_tokenizer_kind(handle).decode()
        self.vocab_size = L.hasten_tokenizer_vocab_size(handle)
        self.bos_id = L.hasten_tokenizer_bos_id(handle)
        self.eos_id = L.hasten_tokenizer_eos_id(handle)

    def token_id(self, token):
        return self.rt.lib.hasten_tokenizer_token_id(self.handle, token.encode())

    def encode(self, text, add_special_tokens=False):
        data = text.encode() if isinstance(text, str) else text
        count = ctypes.c_size_t()
        L = self.rt.lib
        self.rt.check(L.hasten_tokenizer_encode(self.handle, data, len(data),
                                                int(add_special_tokens), None, 0,
                                                ctypes.byref(count)))
        ids = (ctypes.c_int64 * max(count.value, 1))()
        self.rt.check(L.hasten_tokenizer_encode(self.handle, data, len(data),
                                                int(add_special_tokens), ids, count.value,
                                                ctypes.byref(count)))
        return list(ids[:count.value])

    def decode_bytes(self, ids, skip_special_tokens=True):
        arr = (ctypes.c_int64 * max(len(ids), 1))(*ids)
        length = ctypes.c_size_t()
        L = self.rt.lib
        self.rt.check(L.hasten_tokenizer_decode(self.handle, arr, len(ids),
                                                int(skip_special_tokens), None, 0,
                                                ctypes.byref(length)))
        buf = ctypes.create_string_buffer(max(length.value, 1))
        self.rt.check(L.hasten_tokenizer_decode(self.handle, arr, len(ids),
                                                int(skip_special_tokens), buf, length.value,
                                                ctypes.byref(length)))
        return buf.raw[:length.value]

    def apply_chat_template(self, messages, add_generation_prompt=True):
        n = len(messages)
        roles = (ctypes.c_char_p * max(n, 1))(*[m["role"].encode() for m in messages])
        contents = (ctypes.c_char_p * max(n, 1))(*[m["content"].encode() for m in messages])
        length = ctypes.c_size_t()
        L = self.rt.lib
        self.rt.check(L.hasten_tokenizer_apply_chat_template(
            self.handle, roles, contents, n, int(add_generation_prompt), None, 0,
            ctypes.byref(length)))
        buf = ctypes.create_string_buffer(max(length.value, 1))
        self.rt.check(L.hasten_tokenizer_apply_chat_template(
            self.handle, roles, contents, n, int(add_generation_prompt), buf, length.value,
            ctypes.byref(length)))
        return buf.raw[:length.value].decode()

    def stream(self, ids, skip_special_tokens=True):
        """The pieces a text stream releases for `ids`, then its tail."""
        L, handle = self.rt.lib, ctypes.c_void_p()
        self.rt.check(L.hasten_text_stream_create(self.handle, int(skip_special_tokens),
                                                  ctypes.byref(handle)))
        pieces, text, length = [], ctypes.c_char_p(), ctypes.c_size_t()
        try:
            for token in ids:
                self.rt.check(L.hasten_text_stream_push(handle, token, ctypes.byref(text),
                                                        ctypes.byref(length)))
                pieces.append(ctypes.string_at(text, length.value))
            self.rt.check(L.hasten_text_stream_finish(handle, ctypes.byref(text),
                                                      ctypes.byref(length)))
            pieces.append(ctypes.string_at(text, length.value))
        finally:
            L.hasten_text_stream_free(handle)
        return pieces

    def free(self):
        self.rt.lib.hasten_tokenizer_free(self.handle)


class Module:
    def __init__(self, rt, handle):
        self.rt, self.handle = rt, handle
        self.vocab = rt.lib.hasten_module_vocab_size(handle)
        self.capacity = rt.lib.hasten_module_kv_capacity(handle)
        self.block_size = rt.lib.hasten_module_kv_block_size(handle)
        self.weight_bytes = rt.lib.hasten_module_weight_bytes(handle)

    def sequence(self, pool=None, model=None):
        handle = ctypes.c_void_p()
        if model is None:
            self.rt.check(self.rt.lib.hasten_sequence_create(
                self.handle, pool.handle if pool else None, ctypes.byref(handle)))
        else:
            self.rt.check(self.rt.lib.hasten_sequence_create_for_model(
                self.handle, model.encode(), pool.handle if pool else None,
                ctypes.byref(handle)))
        return Sequence(self, handle)

    def free(self):
        self.rt.lib.hasten_module_free(self.handle)

    def weights(self):
        """[(name, format, bytes)] as the manifest lists them."""
        L = self.rt.lib
        return [(L.hasten_module_weight_name(self.handle, i).decode(),
                 L.hasten_module_weight_format(self.handle, i).decode(),
                 L.hasten_module_weight_size(self.handle, i))
                for i in range(L.hasten_module_num_weights(self.handle))]

    def weights_path(self):
        return self.rt.lib.hasten_module_weights_path(self.handle).decode()

    def verify_weights(self):
        self.rt.check(self.rt.lib.hasten_module_verify_weights(self.handle))

    def run(self, entry, arrays):
        """Runs `entry` on numpy arrays in signature order; returns the outputs."""
        L = self.rt.lib
        arrays = [np.ascontiguousarray(a) for a in arrays]
        handles = (ctypes.c_void_p * len(arrays))(*[self.rt.wrap(a) for a in arrays])
        count = ctypes.c_size_t()
        self.rt.check(L.hasten_entry_num_tensors(self.handle, entry.encode(), 1,
                                                 ctypes.byref(count)))
        outputs = (ctypes.c_void_p * count.value)()
        try:
            self.rt.check(L.hasten_run(self.handle, entry.encode(), handles, len(arrays),
                                       outputs, count.value))
        finally:
            for h in handles:
                L.hasten_tensor_free(h)
        return [self.rt.take(ctypes.c_void_p(h)) for h in outputs]

    def sampler_steps(self, entry="generate"):
        return self.rt.lib.hasten_entry_sampler_steps(self.handle, entry.encode())

    def generate_sample(self, seed=0, inputs=None, entry=None):
        """hasten_generate_sample with {name: array}; returns (sample, stats)."""
        L = self.rt.lib
        inputs = {k: np.ascontiguousarray(v) for k, v in (inputs or {}).items()}
        names = (ctypes.c_char_p * max(len(inputs), 1))(*[k.encode() for k in inputs])
        handles = (ctypes.c_void_p * max(len(inputs), 1))(
            *[self.rt.wrap(v) for v in inputs.values()])
        sample = ctypes.c_void_p()
        stats = SampleStats(ctypes.sizeof(SampleStats), 0, 0.0)
        try:
            self.rt.check(L.hasten_generate_sample(
                self.handle, entry.encode() if entry else None, seed, names, handles,
                len(inputs), ctypes.byref(sample), ctypes.byref(stats)))
        finally:
            for h in list(handles)[:len(inputs)]:
                L.hasten_tensor_free(h)
        return self.rt.take(sample), stats

    def stream(self, seed=0, entry=None):
        handle = ctypes.c_void_p()
        self.rt.check(self.rt.lib.hasten_sample_stream_create(
            self.handle, entry.encode() if entry else None, seed, ctypes.byref(handle)))
        return SampleStream(self.rt, handle)

    def pool(self, max_tokens):
        handle = ctypes.c_void_p()
        self.rt.check(self.rt.lib.hasten_kv_pool_create(self.handle, max_tokens,
                                                        ctypes.byref(handle)))
        return Pool(self.rt, handle)


class SampleStream:
    def __init__(self, rt, handle):
        self.rt, self.handle = rt, handle
        self.depth = rt.lib.hasten_sample_stream_depth(handle)

    def push(self, inputs):
        """One tick with {name: array}; the finished frame, or None."""
        L = self.rt.lib
        inputs = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        names = (ctypes.c_char_p * max(len(inputs), 1))(*[k.encode() for k in inputs])
        handles = (ctypes.c_void_p * max(len(inputs), 1))(
            *[self.rt.wrap(v) for v in inputs.values()])
        sample = ctypes.c_void_p()
        try:
            self.rt.check(L.hasten_sample_stream_push(self.handle, names, handles, len(inputs),
                                                      ctypes.byref(sample)))
        finally:
            for h in list(handles)[:len(inputs)]:
                L.hasten_tensor_free(h)
        return self.rt.take(sample) if sample.value else None

    def free(self):
        self.rt.lib.hasten_sample_stream_free(self.handle)


class Pool:
    def __init__(self, rt, handle):
        self.rt, self.handle = rt, handle

    def free_blocks(self):
        return self.rt.lib.hasten_kv_pool_free_blocks(self.handle)


class Sequence:
    def __init__(self, module, handle):
        self.module, self.handle = module, handle
        self.lib = module.rt.lib

    def append(self, tokens):
        ids = (ctypes.c_int64 * len(tokens))(*[int(t) for t in tokens])
        logits = np.zeros(self.module.vocab, np.float32)
        self.module.rt.check(self.lib.hasten_sequence_append(
            self.handle, ids, len(tokens),
            logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
        return logits

    def verify(self, tokens):
        """Appends `tokens`; returns the logits of every one, [len, vocab]."""
        ids = (ctypes.c_int64 * len(tokens))(*[int(t) for t in tokens])
        logits = np.zeros((len(tokens), self.module.vocab), np.float32)
        self.module.rt.check(self.lib.hasten_sequence_verify(
            self.handle, ids, len(tokens),
            logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
        return logits

    def tokens(self):
        n = len(self)
        ptr = self.lib.hasten_sequence_tokens(self.handle)
        return [ptr[i] for i in range(n)]

    def generate(self, prompt, max_new_tokens, draft=None, speculative=False, **kw):
        """hasten_generate, or hasten_generate_speculative with `draft` (a
        Sequence or None for prompt lookup) when `speculative`. Keywords set
        GenerateOptions and SpeculationOptions fields. Returns (generated
        tokens, GenerateStats, SpeculationStats or None, status, error)."""
        o = GenerateOptions()
        self.lib.hasten_generate_options_init(ctypes.byref(o))
        so = SpeculationOptions()
        self.lib.hasten_speculation_options_init(ctypes.byref(so))
        o.max_new_tokens = max_new_tokens
        for key, value in kw.items():
            setattr(o if hasattr(o, key) else so, key, value)
        ids = (ctypes.c_int64 * max(1, len(prompt)))(*[int(t) for t in prompt])
        out = (ctypes.c_int64 * max(1, max_new_tokens))()
        st = GenerateStats()
        st.struct_size = ctypes.sizeof(st)
        ss = SpeculationStats()
        ss.struct_size = ctypes.sizeof(ss)
        if speculative:
            status = self.lib.hasten_generate_speculative(
                self.handle, draft.handle if draft is not None else None, ids, len(prompt),
                ctypes.byref(o), ctypes.byref(so), out, ctypes.byref(st), ctypes.byref(ss))
        else:
            status = self.lib.hasten_generate(self.handle, ids, len(prompt), ctypes.byref(o),
                                              out, ctypes.byref(st))
        error = self.lib.hasten_last_error().decode() if status else ""
        return (list(out[:st.generated_tokens]), st, ss if speculative else None, status,
                error)

    def fork(self):
        handle = ctypes.c_void_p()
        self.module.rt.check(self.lib.hasten_sequence_fork(self.handle, ctypes.byref(handle)))
        return Sequence(self.module, handle)

    def truncate(self, length):
        self.module.rt.check(self.lib.hasten_sequence_truncate(self.handle, length))

    def blocks_held(self):
        """How many KV blocks a paged sequence holds (0 for a contiguous one)."""
        count = 0
        while self.lib.hasten_sequence_kv_block_on_device(self.handle, count) >= 0:
            count += 1
        return count

    def __len__(self):
        return self.lib.hasten_sequence_length(self.handle)

    def free(self):
        self.lib.hasten_sequence_free(self.handle)
