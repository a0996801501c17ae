"""hasten: ahead-of-time compiled ONNX models, from Python.

    import hasten, numpy as np
    path = hasten.compile("model.onnx", weights="bf16", cpu="x86-64-v3")
    model = hasten.load(path)
    outputs = model.run(x=np.ones((1, 8), np.float32))     # {"y": array}

    denoiser = hasten.load("gen.so")       # hasten-compile --sampler=ddim:steps=4
    sample, info = denoiser.generate_sample(seed=7, encoder_hidden_states=context)

    decoder = hasten.load("decoder.so")
    tokenizer = hasten.Tokenizer("tokenizer.json")
    sequence = decoder.sequence()
    for piece in sequence.generate_text(tokenizer, "Once upon", max_new_tokens=64):
        print(piece, end="", flush=True)

Every failure raises hasten.Error with the runtime's (or the compiler's)
message; its `status` is the C API's status code. Arrays go in and out
without copies where the layout allows (C-contiguous, the entry's dtype).
"""
import os
import queue
import subprocess
import threading
from collections import namedtuple

import numpy as np

from ._hasten import API_VERSION, Error, TextStream, get_num_threads, kernel_isa, \
    runtime_api_version, set_num_threads
from . import _hasten

__all__ = ["API_VERSION", "Error", "Module", "SampleStream", "Sequence", "TensorInfo",
           "Tokenizer", "compile", "gaussian_noise", "get_num_threads", "kernel_isa", "load",
           "runtime_api_version", "set_num_threads"]

ROLES = ("", "token_ids", "past_length", "kv_cache", "kv_block_pool", "kv_block_table",
         "logits", "draft_kv_cache", "draft_past_length", "accepted_tokens", "sampler_noise",
         "sampler_state", "sequence_data", "sequence_shapes", "optional_present",
         "string_bytes", "string_lengths", "temperature", "uniforms",
         "draft_kv_block_table")

TensorInfo = namedtuple("TensorInfo", "name dtype shape role")
TensorInfo.__doc__ = """An entry's input or output: its dtype name ("f32"), its
shape (ints, with a str or None for a dynamic size) and its role
("token_ids", "logits", ... or "")."""


def _error(message, status=1):
    error = Error(message)
    error.status = status
    return error


def _bin_dir():
    if os.environ.get("HASTEN_BIN_DIR"):
        return os.environ["HASTEN_BIN_DIR"]
    from . import _paths
    return _paths.BIN_DIR


def compile(model, output=None, *, weights="f32", cpu=None, kv_capacity=None,
            kv_block_size=None, draft=None, spec_k=None, extra_args=()):
    """Compiles `model` (.onnx or .mlir) with hasten-compile into a shared
    library; returns its path (default: the model's, ending in .so).
    `weights`: "f32" or "bf16"; `cpu`: "native" (default), "x86-64-v3", ...;
    `draft`: a draft decoder for speculative decoding; `extra_args`: any
    other hasten-compile flags. Raises Error with the compiler's message."""
    model = os.fspath(model)
    if output is None:
        output = os.path.splitext(model)[0] + ".so"
    args = [os.path.join(_bin_dir(), "hasten-compile"), model, "-o", os.fspath(output),
            f"--weights={weights}"]
    if cpu is not None:
        args.append(f"--cpu={cpu}")
    if kv_capacity is not None:
        args.append(f"--kv-capacity={int(kv_capacity)}")
    if kv_block_size is not None:
        args.append(f"--kv-block-size={int(kv_block_size)}")
    if draft is not None:
        args += ["--draft", os.fspath(draft)]
    if spec_k is not None:
        args.append(f"--spec-k={int(spec_k)}")
    args += list(extra_args)
    try:
        proc = subprocess.run(args, capture_output=True, text=True)
    except OSError as e:
        raise _error(f"cannot run hasten-compile ({args[0]}): {e}") from None
    if proc.returncode:
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        raise _error("\n".join(lines[-20:]) or f"hasten-compile failed ({proc.returncode})")
    return os.fspath(output)


def load(path, prepare=True):
    """Loads a module compiled by hasten-compile; with `prepare` (the
    default), a decoder's weights are packed now rather than during its
    first requests."""
    module = Module(path)
    if prepare:
        module.prepare()
    return module


class Module:
    """A loaded module: its entries, and sequences for decoders."""

    def __init__(self, path):
        self._module = _hasten.Module(os.fspath(path))
        self.path = os.fspath(path)

    @property
    def entries(self):
        return self._module.entries()

    def _entry(self, entry):
        if entry is not None:
            return entry
        entries = self.entries
        if "main" in entries:
            return "main"
        if len(entries) == 1:
            return entries[0]
        raise _error(f"{self.path}: the module has several entries ({', '.join(entries)}); "
                     "choose one with entry=")

    def inputs(self, entry=None):
        """The entry's inputs, as TensorInfo."""
        return [TensorInfo(n, d, s, ROLES[r])
                for n, d, s, r in self._module.signature(self._entry(entry), False)]

    def outputs(self, entry=None):
        return [TensorInfo(n, d, s, ROLES[r])
                for n, d, s, r in self._module.signature(self._entry(entry), True)]

    def run(self, *arrays, entry=None, **inputs):
        """Runs an entry (default: main, or the only one) on values given in
        order or by name; returns {output name: value}. A value is an array;
        an ONNX sequence is a list of arrays, an optional None or its value
        and strings an array of str (the module passes these as several
        tensors, see hasten_tensor_role)."""
        entry = self._entry(entry)
        in_groups = _value_groups(self.inputs(entry))
        names = [g[0] for g in in_groups]
        if arrays and inputs:
            raise _error("give the inputs either in order or by name, not both", 1)
        if inputs:
            unknown = sorted(set(inputs) - set(names))
            if unknown:
                raise _error(f"entry '{entry}' has no input named '{unknown[0]}' "
                             f"(its inputs: {', '.join(names)})")
            missing = [n for n in names if n not in inputs]
            if missing:
                raise _error(f"missing input '{missing[0]}' of entry '{entry}'")
            arrays = [inputs[n] for n in names]
        if len(arrays) != len(in_groups):
            raise _error(f"entry '{entry}' takes {len(in_groups)} inputs, got {len(arrays)}")
        parts = []
        for (_, kind, infos), value in zip(in_groups, arrays):
            parts += _pack(kind, infos, value)
        results = self._module.run(entry, parts)
        values, at = {}, 0
        for name, kind, infos in _value_groups(self.outputs(entry)):
            values[name] = _unpack(kind, results[at:at + len(infos)])
            at += len(infos)
        return values

    def last_threads(self, entry=None):
        """The threads the entry's last call ran with: fewer than
        get_num_threads() where one thread measured faster for its input
        shapes (HASTEN_ADAPTIVE_THREADS=0 turns that off); 0 before any."""
        return self._module.last_threads(self._entry(entry))

    def prepare(self):
        """Packs the weights now rather than on first use."""
        self._module.prepare()

    @property
    def is_decoder(self):
        return self._module.is_decoder()

    @property
    def vocab_size(self):
        return self._module.vocab_size()

    @property
    def kv_capacity(self):
        return self._module.kv_capacity()

    @property
    def has_draft(self):
        return self._module.has_draft()

    @property
    def weight_bytes(self):
        return self._module.weight_bytes()

    def generate_sample(self, seed=0, entry=None, **inputs):
        """Runs the compiled sampler (a module built with hasten-compile
        --sampler): conditioning by input name, and any noise input to fix;
        the noise not given is drawn with `seed`. Returns (sample, {"steps",
        "seconds"})."""
        return self._module.generate_sample(
            {k: np.asarray(v) for k, v in inputs.items()}, seed, entry)

    def sample_stream(self, seed=0, entry=None):
        """The frames in flight of a stream-batched sampler (hasten-compile
        --stream-batch=N): push(**inputs) returns the frame pushed N - 1
        pushes earlier, or None while the stream fills."""
        return SampleStream(_hasten.SampleStream(self._module, seed, entry))

    def sequence(self, model=None):
        """A new, empty sequence with its own KV cache; `model` names a
        namespace ("draft" for a draft compiled into the module)."""
        return Sequence(_hasten.Sequence(self._module, model))


def _value_groups(infos):
    """[(value name, kind, its TensorInfos)]: a tensor, or the parts of an
    ONNX sequence or optional that the roles mark."""
    groups, i = [], 0
    while i < len(infos):
        optional = infos[i].role == "optional_present"
        main = i + optional
        sequence = (main + 1 < len(infos) and infos[main].role == "sequence_data"
                    and infos[main + 1].role == "sequence_shapes")
        strings = (main + 1 < len(infos) and infos[main].role == "string_bytes"
                   and infos[main + 1].role == "string_lengths")
        end = main + (2 if sequence or strings else 1)
        kind = ("optional " if optional else "") + (
            "sequence" if sequence else "strings" if strings else "tensor")
        groups.append((infos[main].name, kind, infos[i:end]))
        i = end
    return groups


_NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bool": np.bool_,
                 "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
                 "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64}


def _pack_sequence(info, elements):
    dtype = _NUMPY_DTYPES.get(info.dtype)
    arrays = [np.asarray(e, dtype=dtype) for e in elements]
    width = 1 + max([a.ndim for a in arrays], default=0)
    table = np.ones((len(arrays), width), np.int64)
    for row, a in enumerate(arrays):
        table[row, 0] = a.ndim
        table[row, 1:1 + a.ndim] = a.shape
    data = (np.concatenate([a.ravel() for a in arrays]) if arrays
            else np.zeros(0, dtype or np.float32))
    return [data, table]


def _pack_strings(value):
    """Bytes padded to rows and lengths for an array of str (UTF-8) or
    bytes."""
    value = np.asarray(value, dtype=object)
    encoded = [v.encode() if isinstance(v, str) else bytes(v) for v in value.ravel()]
    width = max((len(e) for e in encoded), default=0)
    rows = np.zeros((len(encoded), width), np.uint8)
    for i, e in enumerate(encoded):
        rows[i, :len(e)] = np.frombuffer(e, np.uint8)
    lengths = np.array([len(e) for e in encoded], np.int64)
    return [rows.reshape(value.shape + (width,)), lengths.reshape(value.shape)]


def _pack(kind, infos, value):
    """The module's tensors for one value of `kind`."""
    if kind == "tensor":
        return [np.asarray(value)]
    if kind == "strings":
        return _pack_strings(value)
    if kind == "sequence":
        return _pack_sequence(infos[0], value)
    present = np.array(value is not None)
    if kind == "optional sequence":
        return [present] + _pack_sequence(infos[1], value if value is not None else [])
    if value is None:
        value = np.zeros([d if isinstance(d, int) else 0 for d in infos[1].shape],
                         _NUMPY_DTYPES.get(infos[1].dtype, np.float32))
    return [present, np.asarray(value)]


def _unpack(kind, parts):
    if kind == "tensor":
        return parts[0]
    if kind == "strings":
        rows, lengths = parts
        flat = rows.reshape(-1, rows.shape[-1]) if rows.size else np.zeros((lengths.size, 0),
                                                                            np.uint8)
        text = [bytes(flat[i, :int(n)]).decode(errors="replace")
                for i, n in enumerate(lengths.ravel())]
        return np.array(text, dtype=object).reshape(lengths.shape)
    if kind.startswith("optional"):
        if not bool(parts[0]):
            return None
        parts = parts[1:]
        if kind == "optional tensor":
            return parts[0]
    data, table = parts
    elements, at = [], 0
    for row in table:
        shape = tuple(int(d) for d in row[1:1 + int(row[0])])
        count = int(np.prod(shape, dtype=np.int64))
        elements.append(data[at:at + count].reshape(shape))
        at += count
    return elements


class SampleStream:
    """A stream-batched sampler's frames in flight."""

    def __init__(self, handle):
        self._stream = handle

    @property
    def depth(self):
        """Frames in flight at once (the sampler's steps)."""
        return self._stream.depth()

    def push(self, **inputs):
        return self._stream.push({k: np.asarray(v) for k, v in inputs.items()})


def gaussian_noise(seed, stream, shape):
    """The noise the runtime draws for noise input `stream` with `seed`."""
    return _hasten.gaussian_noise(seed, stream, int(np.prod(shape))).reshape(shape)


_DONE = object()


class Sequence:
    """Tokens run through a decoder, with their KV cache."""

    def __init__(self, handle):
        self._seq = handle
        #: The statistics of the last generate(): prompt/generated tokens,
        #: prefill/decode seconds, stopped_by_token (and speculation counts).
        self.stats = None

    def __len__(self):
        return len(self._seq)

    @property
    def capacity(self):
        return self._seq.capacity()

    @property
    def tokens(self):
        return self._seq.tokens()

    def append(self, tokens):
        """Runs `tokens` and returns the last one's logits."""
        return self._seq.append([int(t) for t in tokens])

    def verify(self, tokens):
        """Runs `tokens` and returns every one's logits, [len(tokens), vocab]."""
        return self._seq.verify([int(t) for t in tokens])

    def truncate(self, length):
        self._seq.truncate(int(length))

    def reset(self):
        self._seq.reset()

    def fork(self):
        return Sequence(self._seq.fork())

    def generate(self, prompt, max_new_tokens=32, *, temperature=0.0, top_k=0, top_p=1.0,
                 seed=0, stop_tokens=(), draft=None, speculative=False, k=0):
        """Yields each generated token as it is chosen (hasten_generate).
        The prompt follows what the sequence holds; the last token yielded
        is not run, so pass it (with more) as the next prompt to continue.
        `draft` (another Sequence) or speculative=True (prompt lookup)
        speculates; the tokens are the same. Closing the iterator early stops
        the generation after the current token."""
        stop = threading.Event()
        # The generating thread waits for the consumer to take each token
        # before it runs the next, so that closing the iterator stops it
        # after the token the consumer has (however fast the model is).
        resume = threading.Event()
        tokens = queue.Queue()
        outcome = {}

        def on_token(token):
            tokens.put(token)
            resume.wait()
            resume.clear()
            return stop.is_set()

        def work():
            try:
                outcome["result"] = self._seq.generate(
                    [int(t) for t in prompt], int(max_new_tokens), float(temperature),
                    int(top_k), float(top_p), int(seed), [int(t) for t in stop_tokens],
                    on_token, draft._seq if draft is not None else None,
                    bool(speculative or draft is not None), int(k))
            except BaseException as e:  # reported to the consumer below
                outcome["error"] = e
            finally:
                tokens.put(_DONE)

        worker = threading.Thread(target=work, name="hasten-generate", daemon=True)
        worker.start()
        finished = False
        try:
            while True:
                token = tokens.get()
                if token is _DONE:
                    break
                yield token
                resume.set()
            finished = True
        finally:
            stop.set()
            resume.set()
            worker.join()
            if "result" in outcome:
                self.stats = outcome["result"][1]
        if finished and "error" in outcome:
            raise outcome["error"]

    def generate_text(self, tokenizer, text, max_new_tokens=32, *, add_special_tokens=None,
                      stop_at_eos=True, **options):
        """generate() from a text prompt, yielding text as whole characters
        arrive. The BOS is added when the sequence is empty (unless
        add_special_tokens says otherwise); generation stops at the
        tokenizer's EOS unless stop_at_eos=False."""
        if add_special_tokens is None:
            add_special_tokens = len(self) == 0
        prompt = tokenizer.encode(text, add_special_tokens=add_special_tokens)
        stops = list(options.pop("stop_tokens", ()))
        if stop_at_eos and tokenizer.eos_id >= 0:
            stops.append(tokenizer.eos_id)
        stream = tokenizer.stream()
        for token in self.generate(prompt, max_new_tokens, stop_tokens=stops, **options):
            piece = stream.push(token)
            if piece:
                yield piece
        tail = stream.finish()
        if tail:
            yield tail


class Tokenizer:
    """A model's tokenizer: tokenizer.json (byte-level BPE), a SentencePiece
    .model, or a folder holding one (with tokenizer_config.json)."""

    def __init__(self, path):
        self._tok = _hasten.Tokenizer(os.fspath(path))

    kind = property(lambda self: self._tok.kind)
    vocab_size = property(lambda self: self._tok.vocab_size)
    bos_id = property(lambda self: self._tok.bos_id)
    eos_id = property(lambda self: self._tok.eos_id)
    chat_template = property(lambda self: self._tok.chat_template)

    def token_id(self, token):
        return self._tok.token_id(token)

    def encode(self, text, add_special_tokens=True):
        return self._tok.encode(text, bool(add_special_tokens))

    def apply_chat_template(self, messages, add_generation_prompt=True):
        """The conversation (dicts with "role" and "content") rendered
        through tokenizer_config.json's chat template, as Hugging Face's
        apply_chat_template renders it; encode it with
        add_special_tokens=False."""
        return self._tok.apply_chat_template(
            [(str(m["role"]), str(m["content"])) for m in messages], bool(add_generation_prompt))

    def decode(self, ids, skip_special_tokens=True):
        """The text of `ids` (bytes that are not UTF-8 show as U+FFFD)."""
        return self.decode_bytes(ids, skip_special_tokens).decode("utf-8", "replace")

    def decode_bytes(self, ids, skip_special_tokens=True):
        return self._tok.decode_bytes([int(t) for t in ids], bool(skip_special_tokens))

    def stream(self, skip_special_tokens=True):
        """A TextStream: push(token) returns the text that is complete."""
        return TextStream(self._tok, bool(skip_special_tokens))
