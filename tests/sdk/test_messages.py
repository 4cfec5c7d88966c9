"""The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) through the official
`anthropic` Python SDK: text, stop sequences, streaming events, tool use, token counting, errors and auth.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct:

    HEARTH_BASE_URL=http://127.0.0.1:<port>/v1 HEARTH_MODEL=<model id> python3 tests/sdk/test_messages.py

The SDK appends `/v1/messages` itself, so it is given the server's root URL. The server runs without an API key;
the auth test runs only when HEARTH_API_KEY names the key of a server that has one (the other tests then send
that key too). Only the stdlib `unittest`, `anthropic` and `httpx` are used. Prompts are short and `max_tokens`
small, because the server decodes only a few dozen tokens per second on the CI machine.

`anthropic` 2 dropped `temperature` from the typed arguments, though the API still takes it, so it goes in
`extra_body` (the SDK's escape hatch, and what LangChain sends too). Comparisons between two answers use
temperature 0, where decoding is greedy and so deterministic.
"""

import json
import os
import unittest

import anthropic
import httpx

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
MODEL = os.environ["HEARTH_MODEL"]
ROOT_URL = BASE_URL[: -len("/v1")] if BASE_URL.endswith("/v1") else BASE_URL
API_KEY = os.environ.get("HEARTH_API_KEY")
TIMEOUT = 120.0

client = anthropic.Anthropic(base_url=ROOT_URL, api_key=API_KEY or "unused", max_retries=0, timeout=TIMEOUT)

LONG = "Write a very long story about a dragon and a knight."
VERSION = {"anthropic-version": "2023-06-01"}
HEADERS = {**VERSION, **({"x-api-key": API_KEY} if API_KEY else {})}

WEATHER = {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                     "required": ["city"]},
}


def prompt_tokens(usage):
    """The whole prompt: Anthropic's usage splits it into computed and cache-read tokens."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0)


def user(content):
    return [{"role": "user", "content": content}]


def params(messages, max_tokens=16, temperature=0.0, **kw):
    """The keyword arguments of one request; `messages` may be a plain prompt."""
    if isinstance(messages, str):
        messages = user(messages)
    return dict(model=MODEL, max_tokens=max_tokens, messages=messages,
                extra_body={"temperature": temperature}, **kw)


def create(messages, **kw):
    return client.messages.create(**params(messages, **kw))


def text_of(msg):
    return "".join(block.text for block in msg.content if block.type == "text")


def tool_uses(msg):
    return [block for block in msg.content if block.type == "tool_use"]


def raw_post(path="/v1/messages", headers=HEADERS, **kw):
    return httpx.post(f"{ROOT_URL}{path}", headers=headers, timeout=TIMEOUT, **kw)


class MessagesTests(unittest.TestCase):
    maxDiff = None

    # ---------------------------------------------------------------- helpers
    def check_call(self, block):
        """A tool_use block of get_weather whose input validates against WEATHER's schema."""
        self.assertEqual(block.type, "tool_use")
        self.assertTrue(block.id.startswith("toolu_"), block.id)
        self.assertEqual(block.name, "get_weather")
        self.assertIsInstance(block.input, dict, block)
        self.assertIsInstance(block.input.get("city"), str, block.input)
        self.assertLessEqual(len(block.input["city"]), 30, block.input)

    def check_error_body(self, body, type_):
        """Anthropic's error shape: `{"type": "error", "error": {"type": ..., "message": ...}}`."""
        self.assertIsInstance(body, dict, f"error body is not an object: {body!r}")
        self.assertEqual(body.get("type"), "error", body)
        self.assertIsInstance(body.get("error"), dict, body)
        self.assertEqual(body["error"].get("type"), type_, body)
        self.assertIsInstance(body["error"].get("message"), str, body)
        self.assertTrue(body["error"]["message"], body)

    # ------------------------------------------------------------------ tests
    def test_01_text_message(self):
        msg = create("What is the capital of France?")
        self.assertIsInstance(msg.id, str)
        self.assertTrue(msg.id.startswith("msg_"), msg.id)
        self.assertEqual(msg.type, "message")
        self.assertEqual(msg.role, "assistant")
        self.assertEqual(msg.model, MODEL)
        self.assertEqual(len(msg.content), 1, msg.content)
        self.assertEqual(msg.content[0].type, "text")
        self.assertTrue(msg.content[0].text.strip(), msg)
        self.assertIn(msg.stop_reason, ("end_turn", "max_tokens"))
        self.assertIsNone(msg.stop_sequence)
        self.assertGreater(msg.usage.input_tokens, 0)
        self.assertGreater(msg.usage.output_tokens, 0)
        self.assertLessEqual(msg.usage.output_tokens, 16)

    def test_02_max_tokens(self):
        msg = create(LONG, max_tokens=3)
        self.assertEqual(msg.stop_reason, "max_tokens")
        self.assertEqual(msg.usage.output_tokens, 3)
        self.assertTrue(text_of(msg), "the 3 tokens made are returned")

    def test_03_system_and_content_blocks(self):
        plain = create("Say hi")
        blocks = create(user([{"type": "text", "text": "Say hi"}]))
        self.assertEqual(text_of(blocks), text_of(plain), "a text block is the same prompt as a string")
        self.assertEqual(prompt_tokens(blocks.usage), prompt_tokens(plain.usage))

        system = "You are a pirate. Answer like one."
        as_string = create("Say hi", system=system)
        as_blocks = create("Say hi", system=[{"type": "text", "text": system}])
        self.assertTrue(text_of(as_string).strip())
        # SmolLM2's template writes a default system prompt when none is given, so compare two of ours.
        longer = create("Say hi", system=system + " Use old words and say arr a lot.", max_tokens=1)
        self.assertGreater(prompt_tokens(longer.usage), prompt_tokens(as_string.usage), "the system prompt is used")
        self.assertEqual(text_of(as_blocks), text_of(as_string))
        self.assertEqual(prompt_tokens(as_blocks.usage), prompt_tokens(as_string.usage))

    def test_04_stop_sequences(self):
        prompt = "Count from 1 to 20 separated by commas."
        full = text_of(create(prompt, max_tokens=24))
        # A piece of the greedy answer from its middle whose first occurrence is not at the very start (so
        # the stopped text is non-empty): a whole word when the answer has words, else three characters.
        words = full.split()
        middle = words[len(words) // 2:] + words[1:len(words) // 2]
        stop = next((w for w in middle if full.find(w) >= 1), None)
        if stop is None and len(full) >= 6:
            stop = full[len(full) // 2: len(full) // 2 + 3]
        self.assertIsNotNone(stop, f"no usable stop sequence in {full!r}")
        expected = full[: full.find(stop)]

        msg = create(prompt, max_tokens=24, stop_sequences=[stop])
        self.assertEqual(msg.stop_reason, "stop_sequence", f"stop={stop!r} full={full!r}")
        self.assertEqual(msg.stop_sequence, stop)
        self.assertEqual(text_of(msg), expected, f"stop={stop!r} full={full!r}")

        with client.messages.stream(**params(prompt, max_tokens=24, stop_sequences=[stop])) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertEqual(streamed, expected, f"stop={stop!r} full={full!r}")
        self.assertEqual(final.stop_reason, "stop_sequence")
        self.assertEqual(final.stop_sequence, stop)

    def test_05_stream_helper(self):
        req = params("Name three colors.", max_tokens=24)
        ref = client.messages.create(**req)
        with client.messages.stream(**req) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertTrue(text)
        self.assertEqual(text_of(final), text)
        self.assertEqual(text, text_of(ref), "streamed and non-streamed greedy answers agree")
        self.assertTrue(final.id.startswith("msg_"), final.id)
        self.assertEqual(final.model, MODEL)
        self.assertEqual(final.stop_reason, ref.stop_reason)
        self.assertEqual(prompt_tokens(final.usage), prompt_tokens(ref.usage))
        self.assertEqual(final.usage.output_tokens, ref.usage.output_tokens)

    def test_06_raw_stream_events(self):
        req = params("Name three colors.", max_tokens=24)
        ref = client.messages.create(**req)
        events = [e for e in client.messages.create(stream=True, **req) if e.type != "ping"]
        types = [e.type for e in events]
        # message_start, content_block_start, content_block_delta..., content_block_stop, message_delta,
        # message_stop, with the deltas squeezed to one for the comparison.
        squeezed = [t for i, t in enumerate(types) if t != "content_block_delta" or types[i - 1] != t]
        self.assertEqual(squeezed, ["message_start", "content_block_start", "content_block_delta",
                                    "content_block_stop", "message_delta", "message_stop"], types)

        start = events[0].message
        self.assertTrue(start.id.startswith("msg_"), start.id)
        self.assertEqual((start.type, start.role, start.model), ("message", "assistant", MODEL))
        self.assertEqual(start.content, [])
        self.assertIsNone(start.stop_reason)
        self.assertEqual(start.usage.input_tokens, prompt_tokens(ref.usage), "message_start counts the whole prompt")

        block = events[1]
        self.assertEqual((block.index, block.content_block.type, block.content_block.text), (0, "text", ""))
        deltas = [e for e in events if e.type == "content_block_delta"]
        for d in deltas:
            self.assertEqual((d.index, d.delta.type), (0, "text_delta"))
        self.assertEqual(events[-3].index, 0)
        self.assertEqual("".join(d.delta.text for d in deltas), text_of(ref))

        delta = events[-2]
        self.assertEqual(delta.delta.stop_reason, ref.stop_reason)
        self.assertIsNone(delta.delta.stop_sequence)
        self.assertEqual(delta.usage.output_tokens, ref.usage.output_tokens)

    def test_07_tool_use(self):
        choices = {"any": {"type": "any"}, "tool": {"type": "tool", "name": "get_weather"}}
        for name, choice in choices.items():
            with self.subTest(tool_choice=name):
                msg = create("What is the weather in Paris?", max_tokens=300, tools=[WEATHER], tool_choice=choice)
                self.assertEqual(msg.stop_reason, "tool_use", msg)
                calls = tool_uses(msg)
                self.assertGreaterEqual(len(calls), 1, msg.content)
                if name == "tool":
                    self.assertEqual(len(calls), 1, msg.content)
                for call in calls:
                    self.check_call(call)

    def test_08_tool_result_round_trip(self):
        question = {"role": "user", "content": "What is the weather in Paris?"}
        first = create([question], max_tokens=300, tools=[WEATHER], tool_choice={"type": "any"})
        call = tool_uses(first)[0]
        self.check_call(call)
        history = [question, {"role": "assistant", "content": first.content},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                 "content": "21 degrees"}]}]

        with self.subTest(tool_choice="none"):
            second = create(history, max_tokens=40, tools=[WEATHER], tool_choice={"type": "none"})
            self.assertIn(second.stop_reason, ("end_turn", "max_tokens"))
            self.assertEqual(tool_uses(second), [])
            self.assertTrue(text_of(second).strip(), second)
            # With tool_choice none the tools are not described, so compare with the question alone.
            alone = create([question], max_tokens=1, tools=[WEATHER], tool_choice={"type": "none"})
            self.assertGreater(prompt_tokens(second.usage), prompt_tokens(alone.usage),
                               "the call and its result are part of the prompt")
            print(f"round trip: get_weather({json.dumps(call.input)}) -> {text_of(second)!r}")

        with self.subTest(tool_choice="omitted"):
            # Whatever the model does next under `auto`, it is well-formed: text, or another valid call.
            second = create(history, max_tokens=300, tools=[WEATHER])
            calls = tool_uses(second)
            for c in calls:
                self.check_call(c)
            if calls:
                self.assertEqual(second.stop_reason, "tool_use")
            else:
                self.assertIn(second.stop_reason, ("end_turn", "max_tokens"))
                self.assertTrue(text_of(second).strip(), second)

    def test_09_streamed_tool_use(self):
        req = params("What is the weather in Paris?", max_tokens=300, tools=[WEATHER], tool_choice={"type": "any"})
        ref = tool_uses(client.messages.create(**req))
        partial = {}
        with client.messages.stream(**req) as stream:
            for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    partial[event.index] = partial.get(event.index, "") + event.delta.partial_json
            final = stream.get_final_message()
        self.assertEqual(final.stop_reason, "tool_use")
        calls = tool_uses(final)
        self.assertEqual(len(calls), len(ref))
        for index, block in enumerate(final.content):
            if block.type == "tool_use":
                self.check_call(block)
                self.assertIn(index, partial, "the input arrives as input_json_delta events")
                self.assertEqual(json.loads(partial[index]), block.input)
        self.assertEqual([(c.name, c.input) for c in calls], [(c.name, c.input) for c in ref],
                         "streamed and non-streamed greedy calls agree")

    def test_10_count_tokens(self):
        messages = user("What is the capital of France?")
        cases = {"messages": {}, "system": {"system": "You are terse."}, "tools": {"tools": [WEATHER]}}
        for name, extra in cases.items():
            with self.subTest(case=name):
                count = client.messages.count_tokens(model=MODEL, messages=messages, **extra)
                self.assertGreater(count.input_tokens, 0)
                msg = create(messages, max_tokens=1, **extra)
                # Anthropic's usage splits the prompt into computed and cache-read tokens.
                usage = msg.usage
                self.assertEqual(count.input_tokens, prompt_tokens(usage))

    def test_11_version_and_beta_headers(self):
        msg = client.beta.messages.create(**params("Say hi", max_tokens=4), betas=["prompt-caching-2024-07-31"])
        self.assertEqual(msg.type, "message")
        headers = {**HEADERS, "anthropic-beta": "prompt-caching-2024-07-31,tools-2024-04-04"}
        r = raw_post("/v1/messages?beta=true", headers=headers,
                     json={"model": MODEL, "max_tokens": 4, "messages": user("Say hi")})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["type"], "message", r.text)

    def test_12_errors(self):
        with self.subTest(case="missing max_tokens"):
            r = raw_post(json={"model": MODEL, "messages": user("Hi")})
            self.assertEqual(r.status_code, 400, r.text)
            self.check_error_body(r.json(), "invalid_request_error")
        with self.subTest(case="malformed JSON"):
            r = raw_post(content=b'{"model": ', headers={**HEADERS, "content-type": "application/json"})
            self.assertEqual(r.status_code, 400, r.text)
            self.check_error_body(r.json(), "invalid_request_error")
        with self.subTest(case="empty messages"):
            with self.assertRaises(anthropic.BadRequestError) as caught:
                client.messages.create(model=MODEL, max_tokens=4, messages=[])
            self.check_error_body(caught.exception.body, "invalid_request_error")
        with self.subTest(case="unknown model"):
            with self.assertRaises(anthropic.NotFoundError) as caught:
                client.messages.create(model="no-such-model", max_tokens=4, messages=user("Hi"))
            self.assertEqual(caught.exception.status_code, 404)
            self.assertEqual(caught.exception.type, "not_found_error")
            self.check_error_body(caught.exception.body, "not_found_error")

        self.assertTrue(text_of(create("What is the capital of France?", max_tokens=8)).strip(),
                        "server alive after errors")

    @unittest.skipUnless(API_KEY, "HEARTH_API_KEY is not set: the server under test has no key")
    def test_13_api_key(self):
        # The SDK sends its api_key as `x-api-key` (anthropic<2) or `Authorization: Bearer` (anthropic>=2);
        # Claude Code and curl users send `x-api-key` by hand. All three are accepted.
        keyed = anthropic.Anthropic(base_url=ROOT_URL, api_key=API_KEY, max_retries=0, timeout=TIMEOUT)
        self.assertEqual(keyed.messages.create(**params("Say hi", max_tokens=4)).type, "message")
        body = {"model": MODEL, "max_tokens": 4, "messages": user("Say hi")}
        for path in ("/v1/messages", "/v1/messages?beta=true"):
            with self.subTest(header="x-api-key", path=path):
                headers = {**VERSION, "x-api-key": API_KEY, "anthropic-beta": "prompt-caching-2024-07-31"}
                r = raw_post(path, headers=headers, json=body)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(r.json()["type"], "message", r.text)

        wrong = anthropic.Anthropic(base_url=ROOT_URL, api_key=API_KEY + "-wrong", max_retries=0, timeout=TIMEOUT)
        with self.assertRaises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(**params("Say hi", max_tokens=4))
        self.assertEqual(caught.exception.status_code, 401)
        self.check_error_body(caught.exception.body, "authentication_error")
        for name, headers in {"wrong x-api-key": {**VERSION, "x-api-key": API_KEY + "-wrong"},
                              "no key": VERSION}.items():
            with self.subTest(case=name):
                r = raw_post(headers=headers, json=body)
                self.assertEqual(r.status_code, 401, r.text)
                self.check_error_body(r.json(), "authentication_error")


if __name__ == "__main__":
    unittest.main(verbosity=2)
