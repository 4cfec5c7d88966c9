"""/v1/embeddings through the OpenAI Python SDK, checked against sentence-transformers' own numbers.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct and
all-MiniLM-L6-v2:

    HEARTH_BASE_URL=... HEARTH_MODEL=<chat id> HEARTH_EMBEDDING_MODEL=<embedding id> HEARTH_ROOT=<repo> \\
        python3 tests/sdk/test_embeddings.py

tests/fixtures/minilm-reference.json holds embeddings and cosine similarities computed once with
sentence-transformers (mean pooling, L2 normalisation) from the same model files.
"""

import base64
import concurrent.futures
import json
import math
import os
import struct
import unittest

import httpx
import openai

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
CHAT_MODEL = os.environ["HEARTH_MODEL"]
MODEL = os.environ["HEARTH_EMBEDDING_MODEL"]
ROOT = os.environ["HEARTH_ROOT"]
TIMEOUT = 120.0

client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=TIMEOUT)

with open(os.path.join(ROOT, "tests/fixtures/minilm-reference.json")) as f:
    REFERENCE = json.load(f)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def embed(inputs, **kw):
    return client.embeddings.create(model=MODEL, input=inputs, **kw)


class EmbeddingTests(unittest.TestCase):
    def test_01_matches_sentence_transformers(self):
        r = embed(REFERENCE["sentences"], encoding_format="float")
        self.assertEqual(r.object, "list")
        self.assertEqual(r.model, MODEL)
        self.assertEqual([d.index for d in r.data], list(range(len(REFERENCE["sentences"]))))
        vectors = [d.embedding for d in r.data]
        for ours, theirs in zip(vectors, REFERENCE["embeddings"]):
            self.assertEqual(len(ours), REFERENCE["dimensions"])
            self.assertAlmostEqual(math.sqrt(sum(x * x for x in ours)), 1.0, places=4)
            self.assertLess(max(abs(x - y) for x, y in zip(ours, theirs)), 1e-3)
        for i, row in enumerate(REFERENCE["cosine"]):
            for j, expected in enumerate(row):
                self.assertAlmostEqual(cosine(vectors[i], vectors[j]), expected, delta=1e-3)
        self.assertEqual(r.usage.prompt_tokens, sum(len(t) for t in REFERENCE["token_ids"]))
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens)

    def test_02_base64_token_ids_and_single_string(self):
        floats = [d.embedding for d in embed(REFERENCE["sentences"][:2], encoding_format="float").data]
        raw = httpx.post(f"{BASE_URL}/embeddings", json={"model": MODEL, "input": REFERENCE["sentences"][:2],
                                                          "encoding_format": "base64"}, timeout=TIMEOUT).json()
        for item, expected in zip(raw["data"], floats):
            data = base64.b64decode(item["embedding"])
            self.assertEqual(data, struct.pack(f"<{len(expected)}f", *expected), "base64 holds the same f32 values")
        # The SDK asks for base64 by default and decodes it itself.
        by_sdk = embed(REFERENCE["sentences"][:2]).data
        self.assertLess(max(abs(x - y) for x, y in zip(by_sdk[1].embedding, floats[1])), 1e-6)
        by_ids = embed(REFERENCE["token_ids"][:2], encoding_format="float").data
        self.assertLess(max(abs(x - y) for x, y in zip(by_ids[0].embedding, floats[0])), 1e-5)
        single = embed(REFERENCE["sentences"][0], encoding_format="float").data
        self.assertEqual(len(single), 1)
        self.assertLess(max(abs(x - y) for x, y in zip(single[0].embedding, floats[0])), 1e-5)

    def test_03_concurrent_requests_are_batched_without_changing_results(self):
        sentences = REFERENCE["sentences"]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda s: embed(s, encoding_format="float").data[0].embedding, sentences))
        for ours, theirs in zip(results, REFERENCE["embeddings"]):
            self.assertLess(max(abs(x - y) for x, y in zip(ours, theirs)), 1e-3)

    def test_04_errors(self):
        too_long = "word " * 600
        cases = [
            (dict(model=MODEL, input=too_long), 400, "input", "context_length_exceeded"),
            (dict(model=MODEL, input=""), 400, "input", None),
            (dict(model=MODEL, input=["ok", ""]), 400, "input", None),
            (dict(model=MODEL, input="hi", dimensions=128), 400, "dimensions", None),
            (dict(model=MODEL, input="hi", encoding_format="int8"), 400, "encoding_format", None),
            (dict(model=MODEL, input=[[999999]]), 400, "input", None),
            (dict(model=CHAT_MODEL, input="hi"), 400, "model", None),
            (dict(model="no-such-model", input="hi"), 404, "model", "model_not_found"),
        ]
        for body, status, param, code in cases:
            with self.subTest(body=str(body)[:80]):
                r = httpx.post(f"{BASE_URL}/embeddings", json=body, timeout=TIMEOUT)
                self.assertEqual(r.status_code, status, r.text)
                error = r.json()["error"]
                self.assertEqual(error["param"], param)
                self.assertEqual(error["code"], code)
                self.assertTrue(error["message"])
        ok = embed("hi", dimensions=REFERENCE["dimensions"], encoding_format="float")
        self.assertEqual(len(ok.data[0].embedding), REFERENCE["dimensions"])

    def test_05_both_models_listed_and_chosen_by_model(self):
        ids = [m.id for m in client.models.list().data]
        self.assertIn(MODEL, ids)
        self.assertIn(CHAT_MODEL, ids)
        self.assertEqual(client.models.retrieve(MODEL).id, MODEL)
        with self.assertRaises(openai.BadRequestError) as cm:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(cm.exception.body["param"], "model")
        self.assertIn("embedding model", cm.exception.body["message"])
        with self.assertRaises(openai.BadRequestError):
            client.completions.create(model=MODEL, prompt="hi")
        r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2)
        self.assertTrue(r.choices)


if __name__ == "__main__":
    unittest.main(verbosity=2)
