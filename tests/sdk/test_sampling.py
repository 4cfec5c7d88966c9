"""Every sampling control, logprobs, n, legacy completions and /tokenize, through the OpenAI Python SDK.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct:

    HEARTH_BASE_URL=http://127.0.0.1:<port>/v1 HEARTH_MODEL=<model id> python3 tests/sdk/test_sampling.py

Each test asserts an effect that a broken implementation would not show. Generations are short
because the CI machine decodes a few dozen tokens per second.
"""

import concurrent.futures
import math
import os
import unittest

import httpx
import openai

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
MODEL = os.environ["HEARTH_MODEL"]
ROOT_URL = BASE_URL[: -len("/v1")]
TIMEOUT = 120.0

client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=TIMEOUT)

STORY = [{"role": "user", "content": "Write a short story about a cat."}]
REPEAT = [{"role": "user", "content": "Repeat after me ten times: cat cat cat cat cat cat"}]


def chat(**kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", STORY)
    return client.chat.completions.create(**kw)


def text(r, i=0):
    return r.choices[i].message.content


def token_id(token_text):
    """The id of a single token, through /tokenize."""
    r = httpx.post(f"{ROOT_URL}/tokenize", json={"model": MODEL, "prompt": token_text,
                                                  "add_special_tokens": False}, timeout=TIMEOUT)
    r.raise_for_status()
    tokens = r.json()["tokens"]
    assert len(tokens) == 1, (token_text, tokens)
    return tokens[0]


def repeats(tokens):
    """How many tokens are repeats of an earlier token."""
    return len(tokens) - len(set(tokens))


class SamplingTests(unittest.TestCase):
    maxDiff = None

    def test_01_logprobs_shape_and_greedy_is_top(self):
        r = chat(max_tokens=8, temperature=0, logprobs=True, top_logprobs=5)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual("".join(t.token for t in content), text(r))
        for t in content:
            self.assertLessEqual(t.logprob, 0.0)
            self.assertEqual(bytes(t.bytes).decode("utf-8", "replace"), t.token)
            self.assertEqual(len(t.top_logprobs), 5)
            tops = [x.logprob for x in t.top_logprobs]
            self.assertEqual(tops, sorted(tops, reverse=True))
            self.assertEqual(t.top_logprobs[0].token, t.token, "the greedy token is the most likely one")
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob, places=5)
            self.assertLessEqual(sum(math.exp(x) for x in tops), 1.0 + 1e-4)
        plain = chat(max_tokens=8, temperature=0)
        self.assertIsNone(plain.choices[0].logprobs)
        self.assertEqual(text(plain), text(r))

    def test_02_streamed_logprobs_equal_non_streamed(self):
        req = dict(max_tokens=10, temperature=0, logprobs=True, top_logprobs=2)
        whole = chat(**req).choices[0].logprobs.content
        chunks = list(chat(stream=True, **req))
        streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                    for t in c.choices[0].logprobs.content]
        self.assertEqual([(t.token, round(t.logprob, 4)) for t in streamed],
                         [(t.token, round(t.logprob, 4)) for t in whole])

    def test_03_logit_bias_bans_the_greedy_token(self):
        first = chat(max_tokens=1, temperature=0, logprobs=True).choices[0].logprobs.content[0].token
        banned = chat(max_tokens=1, temperature=0, logprobs=True,
                      logit_bias={str(token_id(first)): -100}).choices[0].logprobs.content[0].token
        self.assertNotEqual(banned, first)
        promoted_id = token_id(" banana")
        r = chat(max_tokens=1, temperature=0, logprobs=True, logit_bias={str(promoted_id): 100})
        self.assertEqual(r.choices[0].logprobs.content[0].token, " banana")

    def test_04_frequency_and_repetition_penalties_reduce_repeats(self):
        def ids(**kw):
            r = chat(messages=REPEAT, max_tokens=30, temperature=0, logprobs=True, **kw)
            return [t.token for t in r.choices[0].logprobs.content]
        base = repeats(ids())
        self.assertGreater(base, 10, "the prompt should make the model repeat itself")
        self.assertLess(repeats(ids(frequency_penalty=2.0)), base)
        self.assertLess(repeats(ids(presence_penalty=2.0)), base)
        self.assertLess(repeats(ids(extra_body={"repetition_penalty": 1.8})), base)

    def test_05_top_k_1_and_min_p_1_are_greedy(self):
        greedy = text(chat(max_tokens=16, temperature=0))
        self.assertEqual(text(chat(max_tokens=16, temperature=1.5, seed=1, extra_body={"top_k": 1})), greedy)
        self.assertEqual(text(chat(max_tokens=16, temperature=1.5, seed=2, extra_body={"min_p": 1.0})), greedy)
        hot = {text(chat(max_tokens=16, temperature=1.5, seed=s)) for s in (3, 4, 5)}
        self.assertNotEqual(hot, {greedy}, "temperature 1.5 without filters should stray from greedy")

    def test_06_seed_is_reproducible_alone_and_in_a_batch(self):
        req = dict(max_tokens=12, temperature=1.0, seed=1234)
        alone = text(chat(**req))
        self.assertEqual(text(chat(**req)), alone)
        others = [dict(max_tokens=12, temperature=1.0, seed=s,
                       messages=[{"role": "user", "content": f"Say something about the number {s}."}])
                  for s in range(7)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(chat, **kw) for kw in others[:4]]
            mine = pool.submit(chat, **req)
            futures += [pool.submit(chat, **kw) for kw in others[4:]]
            self.assertEqual(text(mine.result()), alone)
            for f in futures:
                f.result()
        self.assertNotEqual(text(chat(max_tokens=12, temperature=1.0, seed=99)), alone)

    def test_07_n_choices(self):
        r = chat(max_tokens=8, temperature=1.2, seed=7, n=3)
        self.assertEqual([c.index for c in r.choices], [0, 1, 2])
        self.assertGreater(len({text(r, i) for i in range(3)}), 1, "seeded choices draw their own tokens")
        self.assertEqual(r.usage.completion_tokens, 24)
        greedy = chat(max_tokens=8, temperature=0, n=2)
        self.assertEqual(text(greedy, 0), text(greedy, 1))
        self.assertEqual(text(greedy, 0), text(chat(max_tokens=8, temperature=0)))
        chunks = list(chat(max_tokens=8, temperature=0, n=2, stream=True,
                           stream_options={"include_usage": True}))
        streamed = {0: "", 1: ""}
        finished = set()
        for c in chunks:
            for choice in c.choices:
                streamed[choice.index] += choice.delta.content or ""
                if choice.finish_reason:
                    finished.add(choice.index)
        self.assertEqual(streamed, {0: text(greedy, 0), 1: text(greedy, 1)})
        self.assertEqual(finished, {0, 1})
        self.assertEqual(chunks[-1].usage.completion_tokens, greedy.usage.completion_tokens)

    def test_08_stop_ends_each_choice(self):
        full = text(chat(max_tokens=24, temperature=0))
        word = full.split()[3]
        r = chat(max_tokens=24, temperature=0, n=2, stop=[word, "zzzz", "qqqq", "xxxx"])
        for i in range(2):
            self.assertEqual(r.choices[i].finish_reason, "stop")
            self.assertEqual(text(r, i), full[: full.index(word)])

    def test_09_validation_errors_name_the_parameter(self):
        cases = [
            ({"temperature": -0.1}, "temperature"),
            ({"temperature": 2.1}, "temperature"),
            ({"top_p": 0}, "top_p"),
            ({"presence_penalty": 2.5}, "presence_penalty"),
            ({"frequency_penalty": -2.5}, "frequency_penalty"),
            ({"logit_bias": {"1": 101}}, "logit_bias"),
            ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
            ({"n": 0}, "n"),
            ({"n": 17}, "n"),
            ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
            ({"top_logprobs": 2}, "top_logprobs"),
            ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
            ({"extra_body": {"top_k": -5}}, "top_k"),
            ({"extra_body": {"min_p": 1.5}}, "min_p"),
            ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty"),
        ]
        for params, param in cases:
            with self.subTest(params=params):
                with self.assertRaises(openai.BadRequestError) as cm:
                    chat(max_tokens=4, **params)
                self.assertEqual(cm.exception.body["param"], param)
                self.assertEqual(cm.exception.body["type"], "invalid_request_error")


class PrefixCacheTests(unittest.TestCase):
    def test_shared_system_prompt_is_served_from_the_cache(self):
        system = "You are the support assistant of ACME Corporation. Answer politely and briefly. " * 8
        def ask(question):
            return chat(max_tokens=4, temperature=0, messages=[{"role": "system", "content": system},
                                                               {"role": "user", "content": question}])
        ask("Where is my order?")
        second = ask("Can I return a product?")
        cached = second.usage.prompt_tokens_details.cached_tokens
        self.assertGreater(cached, 100, "the shared system prompt's blocks are reused")
        self.assertLess(cached, second.usage.prompt_tokens)


class CompletionTests(unittest.TestCase):
    maxDiff = None

    def complete(self, **kw):
        kw.setdefault("model", MODEL)
        return client.completions.create(**kw)

    def test_01_text_tokens_and_lists(self):
        r = self.complete(prompt="The capital of France is", max_tokens=6, temperature=0)
        self.assertEqual(r.object, "text_completion")
        self.assertTrue(r.id.startswith("cmpl-"))
        self.assertEqual(r.choices[0].index, 0)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 6)
        self.assertIn("Paris", r.choices[0].text)
        ids = httpx.post(f"{ROOT_URL}/tokenize", json={"prompt": "The capital of France is"},
                         timeout=TIMEOUT).json()["tokens"]
        self.assertEqual(r.usage.prompt_tokens, len(ids))
        by_ids = self.complete(prompt=ids, max_tokens=6, temperature=0)
        self.assertEqual(by_ids.choices[0].text, r.choices[0].text)
        many = self.complete(prompt=["The capital of France is", "1, 2, 3,"], n=2, max_tokens=6, temperature=0)
        self.assertEqual([c.index for c in many.choices], [0, 1, 2, 3])
        self.assertEqual(many.choices[0].text, r.choices[0].text)
        self.assertEqual(many.choices[1].text, r.choices[0].text)
        self.assertIn("4", many.choices[2].text)
        self.assertEqual(many.usage.completion_tokens, 24)
        lists = self.complete(prompt=[ids, ids[:3]], max_tokens=3, temperature=0)
        self.assertEqual(len(lists.choices), 2)

    def test_02_streaming_equals_non_streaming(self):
        req = dict(prompt=["Once upon a time", "def fibonacci(n):"], max_tokens=12, temperature=0)
        whole = self.complete(**req)
        chunks = list(self.complete(stream=True, stream_options={"include_usage": True}, **req))
        streamed = {0: "", 1: ""}
        reasons = {}
        for c in chunks:
            self.assertEqual(c.object, "text_completion")
            for choice in c.choices:
                streamed[choice.index] += choice.text
                if choice.finish_reason:
                    reasons[choice.index] = choice.finish_reason
        self.assertEqual(streamed, {0: whole.choices[0].text, 1: whole.choices[1].text})
        self.assertEqual(reasons, {0: "length", 1: "length"})
        self.assertEqual(chunks[-1].usage.total_tokens, whole.usage.total_tokens)

    def test_03_echo_and_logprobs(self):
        prompt = "The capital of France is"
        r = self.complete(prompt=prompt, max_tokens=4, temperature=0, echo=True)
        self.assertTrue(r.choices[0].text.startswith(prompt))
        lp = self.complete(prompt=prompt, max_tokens=5, temperature=0, logprobs=3).choices[0]
        self.assertEqual(len(lp.logprobs.tokens), 5)
        self.assertEqual("".join(lp.logprobs.tokens), lp.text)
        self.assertEqual(lp.logprobs.text_offset[0], 0)
        for i, token in enumerate(lp.logprobs.tokens):
            self.assertEqual(lp.logprobs.text_offset[i], len("".join(lp.logprobs.tokens[:i])))
            top = lp.logprobs.top_logprobs[i]
            self.assertEqual(len(top), 3)
            best = max(top, key=top.get)
            self.assertEqual(best, token)
            self.assertAlmostEqual(top[best], lp.logprobs.token_logprobs[i], places=5)

    def test_04_errors(self):
        cases = [
            (dict(prompt="x", suffix="y"), "suffix"),
            (dict(prompt="x", logprobs=21), "logprobs"),
            (dict(prompt="x", best_of=3), "best_of"),
            (dict(prompt=[999999]), "prompt"),
            (dict(prompt="x", max_tokens=100000), "max_tokens"),
            (dict(prompt="x", temperature=3), "temperature"),
        ]
        for params, param in cases:
            with self.subTest(params=params):
                with self.assertRaises(openai.BadRequestError) as cm:
                    self.complete(**params)
                self.assertEqual(cm.exception.body["param"], param)


class TokenizeTests(unittest.TestCase):
    def test_roundtrip_and_chat_messages(self):
        r = httpx.post(f"{ROOT_URL}/tokenize", json={"model": MODEL, "prompt": "Hello, world!"}, timeout=TIMEOUT)
        self.assertEqual(r.status_code, 200)
        body = r.json()
        self.assertEqual(body["count"], len(body["tokens"]))
        self.assertGreater(body["max_model_len"], 1000)
        back = httpx.post(f"{ROOT_URL}/detokenize", json={"model": MODEL, "tokens": body["tokens"]},
                          timeout=TIMEOUT).json()
        self.assertEqual(back["prompt"], "Hello, world!")
        messages = [{"role": "user", "content": "Hi"}]
        chat_tokens = httpx.post(f"{ROOT_URL}/tokenize", json={"messages": messages}, timeout=TIMEOUT).json()
        r = chat(messages=messages, max_tokens=1)
        self.assertEqual(chat_tokens["count"], r.usage.prompt_tokens)
        bad = httpx.post(f"{ROOT_URL}/detokenize", json={"tokens": [-1]}, timeout=TIMEOUT)
        self.assertEqual(bad.status_code, 400)
        self.assertEqual(bad.json()["error"]["param"], "tokens")


if __name__ == "__main__":
    unittest.main(verbosity=2)
