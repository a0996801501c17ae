"""ctypes bindings to the hasten runtime's generation API, for tests."""
import ctypes
import os

import numpy as np


class HastenError(RuntimeError):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


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
        L.hasten_sequence_create.argtypes = [vp, vp, ctypes.POINTER(vp)]
        L.hasten_sequence_free.argtypes = [vp]
        L.hasten_sequence_fork.argtypes = [vp, ctypes.POINTER(vp)]
        L.hasten_sequence_truncate.argtypes = [vp, i64]
        L.hasten_sequence_reset.argtypes = [vp]
        L.hasten_sequence_length.argtypes = [vp]
        L.hasten_sequence_length.restype = i64
        L.hasten_sequence_append.argtypes = [vp, ctypes.POINTER(i64), sz,
                                             ctypes.POINTER(ctypes.c_float)]
        L.hasten_kv_pool_create.argtypes = [vp, i64, ctypes.POINTER(vp)]
        L.hasten_kv_pool_free.argtypes = [vp]
        L.hasten_kv_pool_free_blocks.argtypes = [vp]
        L.hasten_kv_pool_free_blocks.restype = i64

    def check(self, status):
        if status:
            raise HastenError(status, self.lib.hasten_last_error().decode())

    def load(self, path):
        handle = ctypes.c_void_p()
        self.check(self.lib.hasten_module_load(path.encode(), ctypes.byref(handle)))
        return Module(self, handle)


class Module:
    def __init__(self, rt, handle):
        self.rt, self.handle = rt, handle
        self.vocab = rt.lib.hasten_module_vocab_size(handle)
        self.capacity = rt.lib.hasten_module_kv_capacity(handle)
        self.block_size = rt.lib.hasten_module_kv_block_size(handle)
        self.weight_bytes = rt.lib.hasten_module_weight_bytes(handle)

    def sequence(self, pool=None):
        handle = ctypes.c_void_p()
        self.rt.check(self.rt.lib.hasten_sequence_create(
            self.handle, pool.handle if pool else None, ctypes.byref(handle)))
        return Sequence(self, handle)

    def pool(self, max_tokens):
        handle = ctypes.c_void_p()
        self.rt.check(self.rt.lib.hasten_kv_pool_create(self.handle, max_tokens,
                                                        ctypes.byref(handle)))
        return Pool(self.rt, handle)


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

    def fork(self):
        handle = ctypes.c_void_p()
        self.module.rt.check(self.lib.hasten_sequence_fork(self.handle, ctypes.byref(handle)))
        return Sequence(self.module, handle)

    def truncate(self, length):
        self.module.rt.check(self.lib.hasten_sequence_truncate(self.handle, length))

    def __len__(self):
        return self.lib.hasten_sequence_length(self.handle)

    def free(self):
        self.lib.hasten_sequence_free(self.handle)
