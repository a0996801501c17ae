#!/usr/bin/env python3
"""The Python package against numpy and the reference decoder, with the
same checks as the C API's: outputs equal numpy's, decoders give the numpy
reference's logits and greedy tokens, generation streams and stops, and bad
inputs raise hasten.Error with the runtime's message.

usage: PYTHONPATH=<build>/python test_hasten.py BUILD_DIR   (unittest)
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import generation_vs_numpy as gen  # noqa: E402
import make_decoder as md  # noqa: E402

import hasten  # noqa: E402  (from PYTHONPATH: the build tree's or an install's)

TOKENIZERS = os.path.join(HERE, "..", "tokenizer")


def affine_tanh(path):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Tanh", ["z"], ["y"]), helper.make_node("Cast", ["z"], ["positive"],
                                                                   to=TensorProto.BOOL)],
        "affine_tanh",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, ["batch", 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return w, b


class HastenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory(prefix="hasten-py-")
        work = cls.work.name
        cls.w, cls.b = affine_tanh(os.path.join(work, "graph.onnx"))
        cls.graph_so = hasten.compile(os.path.join(work, "graph.onnx"))
        cls.cfg = md.Config(**md.PRESETS["gpt2-tiny"])
        cls.weights = md.make_weights(cls.cfg)
        onnx.save(md.build_model(cls.cfg, cls.weights), os.path.join(work, "dec.onnx"))
        cls.decoder_so = hasten.compile(os.path.join(work, "dec.onnx"), kv_capacity=32)

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def assertRaisesHasten(self, fragment, fn, *args, **kw):
        with self.assertRaises(hasten.Error) as cm:
            fn(*args, **kw)
        self.assertIn(fragment, str(cm.exception))
        self.assertGreater(cm.exception.status, 0)
        return cm.exception

    # -- compile and run ----------------------------------------------------
    def test_run_matches_numpy(self):
        m = hasten.load(self.graph_so)
        x = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)
        out = m.run(x=x)
        np.testing.assert_allclose(out["y"], np.tanh(x @ self.w + self.b), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out["positive"], (x @ self.w + self.b) != 0)
        self.assertEqual(out["positive"].dtype, np.bool_)
        by_position = m.run(x)
        np.testing.assert_array_equal(by_position["y"], out["y"])
        # The output is the runtime's buffer, not a copy.
        self.assertFalse(out["y"].flags.owndata)

    def test_threads_are_measured_per_shape(self):
        # With two threads allowed, the first calls of a shape alternate
        # between the pool and one thread, two calls on each side (after two
        # warm-up calls, seven pairs), then keep one choice; the results
        # never change. The choice itself
        # depends on this machine's timings, the pattern does not.
        previous = hasten.get_num_threads()
        hasten.set_num_threads(2)
        try:
            m = hasten.load(self.graph_so)
            self.assertEqual(m.last_threads(), 0)
            x = np.linspace(-2, 2, 35, dtype=np.float32).reshape(7, 5)
            start = time.perf_counter()
            want = m.run(x=x)["y"]
            longest = time.perf_counter() - start
            used = [m.last_threads()]
            for _ in range(39):
                start = time.perf_counter()
                np.testing.assert_array_equal(m.run(x=x)["y"], want)
                longest = max(longest, time.perf_counter() - start)
                used.append(m.last_threads())
            # Two calls of 20 ms or more (a machine busy enough to pause
            # this one) rightly end the trial early, on the pool.
            if longest < 0.02:
                self.assertEqual(used[:30], [2, 2] + [2, 2, 1, 1] * 7)
                self.assertEqual(len(set(used[30:])), 1, used)
            else:
                self.assertTrue(set(used) <= {1, 2}, used)
            # Another shape is measured on its own.
            m.run(x=x[:3])
            self.assertEqual(m.last_threads(), 2)
        finally:
            hasten.set_num_threads(previous)
        env = dict(os.environ, HASTEN_ADAPTIVE_THREADS="0")
        script = ("import sys, numpy as np, hasten; hasten.set_num_threads(2); "
                  "m = hasten.load(sys.argv[1]); x = np.ones((7, 5), np.float32)\n"
                  "for _ in range(20): m.run(x=x); print(m.last_threads())")
        out = subprocess.run([sys.executable, "-c", script, self.graph_so], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        self.assertEqual(out, ["2"] * 20)

    def test_inputs_are_converted_or_refused(self):
        m = hasten.load(self.graph_so)
        x64 = np.linspace(-1, 1, 10).reshape(2, 5)  # float64, converted
        np.testing.assert_allclose(m.run(x=x64)["y"], np.tanh(x64 @ self.w + self.b), rtol=1e-5)
        strided = np.linspace(-1, 1, 20, dtype=np.float32).reshape(2, 10)[:, ::2]
        np.testing.assert_allclose(m.run(x=strided)["y"], np.tanh(strided @ self.w + self.b),
                                   rtol=1e-5)
        self.assertRaisesHasten("input 'x' must be f32, got numpy bool", m.run,
                                x=np.ones((2, 5), bool))

    def test_signature(self):
        m = hasten.load(self.graph_so)
        self.assertEqual(m.entries, ["main"])
        x, = m.inputs()
        self.assertEqual((x.name, x.dtype, x.shape), ("x", "f32", ("batch", 5)))
        self.assertEqual([t.name for t in m.outputs()], ["y", "positive"])

    def test_bad_inputs_raise(self):
        m = hasten.load(self.graph_so)
        self.assertRaisesHasten("input 'x' must have shape [batch, 5], got [2, 4]", m.run,
                                x=np.ones((2, 4), np.float32))
        self.assertRaisesHasten("has no input named 'z'", m.run, z=np.ones((2, 5), np.float32))
        self.assertRaisesHasten("takes 1 inputs, got 2", m.run, np.ones((2, 5), np.float32),
                                np.ones((2, 5), np.float32))
        self.assertRaisesHasten("no-such-entry", m.run, np.ones((2, 5), np.float32),
                                entry="no-such-entry")

    def test_bad_files_raise(self):
        e = self.assertRaisesHasten("missing.so", hasten.load, "/nonexistent/missing.so")
        self.assertEqual(e.status, 2)  # HASTEN_ERROR_NOT_FOUND
        onnx_path = os.path.join(self.work.name, "graph.onnx")
        self.assertRaisesHasten("not a loadable shared library", hasten.load, onnx_path)
        bad = os.path.join(self.work.name, "garbage.onnx")
        with open(bad, "wb") as f:
            f.write(b"\x08\x07garbage")
        self.assertRaisesHasten("garbage.onnx", hasten.compile, bad)
        self.assertRaisesHasten("--weights must be f32, bf16, int8 or int4", hasten.compile, onnx_path,
                                os.path.join(self.work.name, "x.so"), weights="int3")

    # -- decoders -----------------------------------------------------------
    def test_sequences_and_optionals(self):
        # Lists in and out for ONNX sequences, None or a value for optionals.
        seq = helper.make_sequence_type_proto(
            helper.make_tensor_type_proto(TensorProto.FLOAT, None))
        opt = helper.make_optional_type_proto(
            helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
        graph = helper.make_graph(
            [helper.make_node("SequenceInsert", ["s", "x", "at"], ["grown"]),
             helper.make_node("OptionalHasElement", ["o"], ["has"]),
             helper.make_node("Identity", ["o"], ["same"])],
            "sequences",
            [helper.make_value_info("s", seq),
             helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2]),
             helper.make_tensor_value_info("at", TensorProto.INT64, []),
             helper.make_value_info("o", opt)],
            [helper.make_value_info("grown", seq),
             helper.make_tensor_value_info("has", TensorProto.BOOL, []),
             helper.make_value_info("same", opt)])
        path = os.path.join(self.work.name, "sequences.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        model = hasten.load(hasten.compile(path))
        self.assertEqual([t.role for t in model.inputs()],
                         ["sequence_data", "sequence_shapes", "", "", "optional_present", ""])
        s = [np.arange(3, dtype=np.float32), np.full((1, 4), 7, np.float32)]
        x = np.array([[1, 2], [3, 4]], np.float32)
        for at, o in ((1, np.array([5, 6], np.float32)), (-2, None), (2, None)):
            out = model.run(s=s, x=x, at=np.array(at, np.int64), o=o)
            want = list(s)
            want.insert(at if at >= 0 else len(s) + at, x)
            self.assertEqual(len(out["grown"]), len(want))
            for got, expected in zip(out["grown"], want):
                np.testing.assert_array_equal(got, expected)
            self.assertEqual(bool(out["has"]), o is not None)
            if o is None:
                self.assertIsNone(out["same"])
            else:
                np.testing.assert_array_equal(out["same"], o)
        out = model.run(s=[], x=x, at=np.array(0, np.int64), o=None)
        self.assertEqual(len(out["grown"]), 1)
        np.testing.assert_array_equal(out["grown"][0], x)

    def test_strings(self):
        # Arrays of str in and out: a StringNormalizer and a Cast both ways.
        graph = helper.make_graph(
            [helper.make_node("StringNormalizer", ["words"], ["kept"], case_change_action="UPPER",
                              stopwords=["the"]),
             helper.make_node("Cast", ["x"], ["text"], to=TensorProto.STRING),
             helper.make_node("Cast", ["text"], ["back"], to=TensorProto.FLOAT)],
            "strings",
            [helper.make_tensor_value_info("words", TensorProto.STRING, ["n"]),
             helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
            [helper.make_tensor_value_info("kept", TensorProto.STRING, ["m"]),
             helper.make_tensor_value_info("text", TensorProto.STRING, [2, 2]),
             helper.make_tensor_value_info("back", TensorProto.FLOAT, [2, 2])])
        path = os.path.join(self.work.name, "strings.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        model = hasten.load(hasten.compile(path))
        x = np.array([[0.1, -2.5], [1e-5, 3e20]], np.float32)
        out = model.run(words=np.array(["The", "quick", "ünï", "fox"]), x=x)
        self.assertEqual(out["kept"].tolist(), ["QUICK", "üNï", "FOX"])
        self.assertEqual(out["text"].tolist(), [[str(v) for v in row] for row in x])
        np.testing.assert_array_equal(out["back"], x)
        self.assertEqual(model.run(words=np.array(["the"]), x=x)["kept"].tolist(), [""])

    def test_logits_match_the_reference(self):
        m = hasten.load(self.decoder_so)
        self.assertTrue(m.is_decoder)
        seq = m.sequence()
        ref = gen.Reference(self.cfg, self.weights)
        for tokens in ([1, 17, 42, 99], [5], [7, 8, 9]):
            got = seq.append(tokens)
            want = ref.feed(tokens)
            self.assertLess(gen.rel_err(got, want), 1e-4)
        self.assertEqual(seq.tokens, [1, 17, 42, 99, 5, 7, 8, 9])
        fork = seq.fork()
        seq.truncate(4)
        self.assertEqual(len(seq), 4)
        self.assertLess(gen.rel_err(fork.append([3]), ref.feed([3])), 1e-4)

    def test_generate_streams_the_reference_tokens(self):
        m = hasten.load(self.decoder_so)
        prompt = [72, 101, 108, 108, 111]
        want = gen.greedy_reference(self.cfg, self.weights, prompt, 10)
        seq = m.sequence()
        self.assertEqual(list(seq.generate(prompt, 10)), want)
        self.assertEqual(seq.stats["generated_tokens"], 10)
        # Speculation (prompt lookup) gives the same tokens.
        spec = m.sequence()
        self.assertEqual(list(spec.generate(prompt, 10, speculative=True)), want)
        # A stop token ends it.
        seq = m.sequence()
        self.assertEqual(list(seq.generate(prompt, 10, stop_tokens=[want[0]])), want[:1])
        self.assertTrue(seq.stats["stopped_by_token"])

    def test_closing_the_stream_stops_generation(self):
        m = hasten.load(self.decoder_so)
        seq = m.sequence()
        stream = seq.generate([1, 2, 3], 20)
        first = [next(stream), next(stream)]
        stream.close()
        self.assertLessEqual(seq.stats["generated_tokens"], 3)
        self.assertEqual(len(first), 2)
        self.assertLessEqual(len(seq), 3 + 3)

    def test_a_full_cache_raises_after_the_tokens_that_fit(self):
        m = hasten.load(self.decoder_so)
        seq = m.sequence()
        got = []
        e = self.assertRaisesHasten("KV cache", lambda: got.extend(seq.generate([1] * 30, 10)))
        self.assertEqual(e.status, 5)  # HASTEN_ERROR_OUT_OF_MEMORY
        self.assertEqual(len(got), 3)  # 30 + 2 run fill 32; the third is returned
        self.assertRaisesHasten("outside the vocabulary", m.sequence().append, [256])

    # -- tokenizers -----------------------------------------------------------
    def test_tokenizer_matches_the_reference(self):
        with open(os.path.join(TOKENIZERS, "cases.json"), encoding="utf-8") as f:
            cases = json.load(f)["cases"]
        for name in ("gpt2-bpe.json", "llama3-bpe.json", "spm.model"):
            tok = hasten.Tokenizer(os.path.join(TOKENIZERS, name))
            for case in cases:
                if case["tokenizer"] != name or case.get("nfc_changes"):
                    continue
                self.assertEqual(tok.encode(case["text"], add_special_tokens=False), case["ids"])
                self.assertEqual(tok.encode(case["text"]), case["ids_with_special"])
                self.assertEqual(tok.decode(case["ids_with_special"]), case["decoded"])
        tok = hasten.Tokenizer(os.path.join(TOKENIZERS, "gpt2-bpe.json"))
        ids = tok.encode("日本語 🤖")
        stream = tok.stream()
        pieces = [stream.push(t) for t in ids] + [stream.finish()]
        self.assertEqual("".join(pieces), "日本語 🤖")
        self.assertIn("", pieces)  # a character split across tokens was held back
        self.assertRaisesHasten("not in the vocabulary", tok.decode, [700])
        self.assertRaisesHasten("No such file", hasten.Tokenizer, "/nonexistent/tokenizer.json")

    def test_chat_template(self):
        with open(os.path.join(TOKENIZERS, "chat_cases.json"), encoding="utf-8") as f:
            data = json.load(f)
        folder = os.path.join(self.work.name, "chat")
        os.makedirs(folder, exist_ok=True)
        import shutil
        shutil.copy(os.path.join(TOKENIZERS, "spm.model"), os.path.join(folder, "tokenizer.model"))
        for case in data["cases"]:
            if case["template"] not in ("llama3", "mistral") or case["conversation"] != "multi-turn":
                continue
            with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
                json.dump({"bos_token": "<s>", "eos_token": "</s>",
                           "chat_template": data["templates"][case["template"]]}, f)
            tok = hasten.Tokenizer(folder)
            messages = data["conversations"][case["conversation"]]
            self.assertEqual(tok.apply_chat_template(messages, case["add_generation_prompt"]),
                             case["text"])
        tok = hasten.Tokenizer(os.path.join(TOKENIZERS, "gpt2-bpe.json"))
        self.assertRaisesHasten("no chat template", tok.apply_chat_template,
                                [{"role": "user", "content": "hi"}])

    def test_generate_text(self):
        compiled = os.path.join(self.work.name, "g700.so")
        cfg = md.Config(**dict(md.PRESETS["gpt2-tiny"], vocab=700))
        weights = md.make_weights(cfg)
        onnx.save(md.build_model(cfg, weights), os.path.join(self.work.name, "g700.onnx"))
        hasten.compile(os.path.join(self.work.name, "g700.onnx"), compiled, kv_capacity=64)
        tok = hasten.Tokenizer(os.path.join(TOKENIZERS, "gpt2-bpe.json"))
        prompt = "Hello, world!"
        want_ids = gen.greedy_reference(cfg, weights, tok.encode(prompt), 8)
        text = "".join(hasten.load(compiled).sequence().generate_text(
            tok, prompt, 8, stop_at_eos=False))
        self.assertEqual(text, tok.decode(want_ids))

    # -- compiled samplers -----------------------------------------------------
    def test_generate_sample_matches_the_entry_and_the_stream(self):
        dit = os.path.join(HERE, "..", "models", "denoisers", "dit_tiny.onnx")
        gen_so = hasten.compile(dit, os.path.join(self.work.name, "gen.so"),
                                extra_args=["--sampler=ddim:timesteps=999,499"])
        module = hasten.load(gen_so)
        rng = np.random.default_rng(0)
        context = rng.standard_normal((1, 4, 16)).astype(np.float32)
        sample, info = module.generate_sample(seed=5, encoder_hidden_states=context)
        self.assertEqual(info["steps"], 2)
        # The drawn noise is input 0's stream; running the entry on it gives
        # the same sample.
        noise = hasten.gaussian_noise(5, 0, (1, 4, 8, 8))
        got = module.run(entry="generate", sample=noise, encoder_hidden_states=context)
        np.testing.assert_array_equal(sample, got["output"])
        self.assertFalse(np.allclose(sample, noise))
        self.assertRaisesHasten("'encoder_hidden_states' is not given", module.generate_sample)
        self.assertRaisesHasten("no input named 'context'", module.generate_sample, context=context)
        stream_so = hasten.compile(dit, os.path.join(self.work.name, "stream.so"),
                                   extra_args=["--sampler=ddim:timesteps=999,499",
                                               "--stream-batch=2"])
        stream = hasten.load(stream_so).sample_stream(seed=1)
        self.assertEqual(stream.depth, 2)
        frames = [rng.standard_normal((1, 4, 8, 8)).astype(np.float32) for _ in range(3)]
        out = [stream.push(sample=f, encoder_hidden_states=context) for f in frames]
        self.assertIsNone(out[0])
        for pushed, finished in zip(frames, out[1:]):
            want, _ = module.generate_sample(sample=pushed, encoder_hidden_states=context)
            self.assertLessEqual(np.abs(finished - want).max(), 1e-5 * np.abs(want).max())


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[2:])
