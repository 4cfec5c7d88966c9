"""The OpenAI Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`) through the official
`openai` Python SDK: text, streaming events, function calls, structured output, stored responses and errors.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct:

    HEARTH_BASE_URL=http://127.0.0.1:<port>/v1 HEARTH_MODEL=<model id> python3 tests/sdk/test_responses.py

The script exits non-zero if any test fails. Only the stdlib `unittest`, `openai` and `httpx` are used. Prompts
are short and `max_output_tokens` small, because the server decodes only a few dozen tokens per second on the CI
machine. Comparisons between two answers use temperature 0, where decoding is greedy and so deterministic.
"""

import json
import os
import unittest

import httpx
import openai

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
MODEL = os.environ["HEARTH_MODEL"]
TIMEOUT = 120.0

client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=TIMEOUT)

LONG = "Write a very long story about a dragon and a knight."

WEATHER = {
    "type": "function", "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"], "additionalProperties": False},
}

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def create(**kw):
    """One non-streaming response; model defaults to HEARTH_MODEL."""
    kw.setdefault("model", MODEL)
    return client.responses.create(**kw)


def events_of(**kw):
    """Every event of one streamed response, in order."""
    kw.setdefault("model", MODEL)
    return list(client.responses.create(stream=True, **kw))


def of_type(items, type_):
    return [item for item in items if item.type == type_]


def user(text):
    return {"role": "user", "content": text}


class ResponsesTests(unittest.TestCase):
    maxDiff = None

    # ---------------------------------------------------------------- helpers
    def check_usage(self, resp, max_output_tokens=None):
        u = resp.usage
        self.assertIsNotNone(u, "a finished response carries usage")
        self.assertGreater(u.input_tokens, 0)
        self.assertGreater(u.output_tokens, 0)
        self.assertEqual(u.total_tokens, u.input_tokens + u.output_tokens)
        if max_output_tokens is not None:
            self.assertLessEqual(u.output_tokens, max_output_tokens)

    def check_call(self, call):
        """A `function_call` item of get_weather whose arguments validate against WEATHER's schema."""
        self.assertEqual(call.type, "function_call")
        self.assertEqual(call.name, "get_weather")
        self.assertIsInstance(call.call_id, str)
        self.assertTrue(call.call_id.startswith("call_"), call.call_id)
        args = json.loads(call.arguments)
        self.assertIsInstance(args, dict, call.arguments)
        self.assertEqual(set(args), {"city"}, call.arguments)
        self.assertIsInstance(args["city"], str, call.arguments)
        self.assertLessEqual(len(args["city"]), 30, call.arguments)
        return args

    def check_error(self, exc, status, param=None):
        """An SDK error carries the status and OpenAI's error object (the SDK unwraps `{"error": ...}`)."""
        self.assertEqual(exc.status_code, status)
        body = exc.body
        self.assertIsInstance(body, dict, f"error body is not an object: {body!r}")
        for key in ("message", "type", "param", "code"):
            self.assertIn(key, body)
        self.assertIsInstance(body["message"], str)
        self.assertTrue(body["message"])
        if param is not None:
            self.assertEqual(body["param"], param)
        return body

    # ------------------------------------------------------------------ tests
    def test_01_text_response(self):
        resp = create(input="What is the capital of France?", max_output_tokens=16, temperature=0)
        self.assertIsInstance(resp.id, str)
        self.assertTrue(resp.id.startswith("resp_"), resp.id)
        self.assertEqual(resp.object, "response")
        self.assertEqual(resp.model, MODEL)
        self.assertIn(resp.status, ("completed", "incomplete"))
        self.assertIsInstance(resp.output_text, str)
        self.assertTrue(resp.output_text.strip(), resp)
        message = resp.output[0]
        self.assertEqual(message.type, "message")
        self.assertEqual(message.role, "assistant")
        self.assertTrue(message.id)
        self.assertEqual(message.content[0].type, "output_text")
        self.assertEqual(message.content[0].text, resp.output_text)
        self.check_usage(resp, 16)

    def test_02_max_output_tokens_gives_incomplete(self):
        resp = create(input=LONG, max_output_tokens=5, temperature=0)
        self.assertEqual(resp.status, "incomplete")
        self.assertIsNotNone(resp.incomplete_details)
        self.assertEqual(resp.incomplete_details.reason, "max_output_tokens")
        self.assertEqual(resp.usage.output_tokens, 5)
        self.assertTrue(resp.output_text, "the 5 tokens made are returned")
        self.assertEqual(resp.output[0].status, "incomplete", "the cut-off message is incomplete too")

    def test_03_instructions_and_input_items(self):
        plain = create(input="Say hi", max_output_tokens=16, temperature=0)
        with self.subTest(form="instructions"):
            r = create(input="Say hi", instructions="You are a pirate. Answer like one.",
                       max_output_tokens=16, temperature=0)
            self.assertTrue(r.output_text.strip())
            # SmolLM2's template writes a default system prompt when none is given, so compare two of ours.
            longer = create(input="Say hi", instructions="You are a pirate. Answer like one. Say arr a lot.",
                            max_output_tokens=1)
            self.assertGreater(longer.usage.input_tokens, r.usage.input_tokens,
                               "the instructions are part of the prompt")
        forms = {
            "input_text parts": [{"role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}],
            "typed message item": [{"type": "message", "role": "user", "content": "Say hi"}],
            "easy message": [user("Say hi")],
        }
        for name, items in forms.items():
            with self.subTest(form=name):
                r = create(input=items, max_output_tokens=16, temperature=0)
                self.assertEqual(r.output_text, plain.output_text, "the same prompt as the plain string")
                self.assertEqual(r.usage.input_tokens, plain.usage.input_tokens)

    def test_04_temperature_zero_is_deterministic(self):
        req = dict(input="Tell me a short fact.", max_output_tokens=16, temperature=0)
        a, b = create(**req), create(**req)
        self.assertTrue(a.output_text)
        self.assertEqual(a.output_text, b.output_text)
        self.assertNotEqual(a.id, b.id, "every response has its own id")

    def test_05_streaming_events(self):
        req = dict(input="Name three colors.", max_output_tokens=24, temperature=0)
        ref = create(**req)
        events = events_of(**req)
        types = [e.type for e in events]

        self.assertEqual(types[:2], ["response.created", "response.in_progress"], types)
        self.assertEqual(events[0].response.status, "in_progress")
        self.assertTrue(events[0].response.id.startswith("resp_"), events[0].response.id)
        seqs = [e.sequence_number for e in events]
        self.assertTrue(all(a < b for a, b in zip(seqs, seqs[1:])), f"sequence_number not increasing: {seqs}")

        final_type = "response.completed" if ref.status == "completed" else "response.incomplete"
        self.assertEqual(types[-1], final_type, types)
        for t in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                  "response.content_part.done", "response.output_item.done"):
            self.assertEqual(types.count(t), 1, f"{t} in {types}")
        self.assertIn("response.output_text.delta", types)
        # The documented order: item, part, deltas, text done, part done, item done, the final response.
        first_delta = types.index("response.output_text.delta")
        last_delta = len(types) - 1 - types[::-1].index("response.output_text.delta")
        order = [types.index("response.output_item.added"), types.index("response.content_part.added"),
                 first_delta, last_delta, types.index("response.output_text.done"),
                 types.index("response.content_part.done"), types.index("response.output_item.done"),
                 len(types) - 1]
        self.assertEqual(order, sorted(order), types)

        added = of_type(events, "response.output_item.added")[0]
        self.assertEqual(added.item.type, "message")
        deltas = of_type(events, "response.output_text.delta")
        for d in deltas:
            self.assertEqual((d.item_id, d.output_index, d.content_index), (added.item.id, 0, 0))
        text = "".join(d.delta for d in deltas)
        self.assertEqual(of_type(events, "response.output_text.done")[0].text, text)
        self.assertEqual(of_type(events, "response.content_part.done")[0].part.text, text)
        done_item = of_type(events, "response.output_item.done")[0].item
        self.assertEqual(done_item.id, added.item.id)
        self.assertEqual(done_item.content[0].text, text)

        final = events[-1].response
        self.assertEqual(final.id, events[0].response.id, "every event is about one response")
        self.assertEqual(final.output_text, text)
        self.assertEqual(text, ref.output_text, "streamed and non-streamed greedy answers agree")
        self.assertEqual(final.status, ref.status)
        self.assertEqual(final.usage.output_tokens, ref.usage.output_tokens)
        self.assertEqual(final.usage.input_tokens, ref.usage.input_tokens)

    def test_06_streaming_max_output_tokens_ends_incomplete(self):
        events = events_of(input=LONG, max_output_tokens=5, temperature=0)
        self.assertEqual(events[-1].type, "response.incomplete", [e.type for e in events])
        final = events[-1].response
        self.assertEqual(final.status, "incomplete")
        self.assertEqual(final.incomplete_details.reason, "max_output_tokens")
        self.assertEqual(final.usage.output_tokens, 5)
        self.assertEqual(final.output_text, "".join(d.delta for d in of_type(events, "response.output_text.delta")))

    def test_07_stream_helper_final_response(self):
        req = dict(input="Say hi", max_output_tokens=64, temperature=0)
        ref = create(**req)
        with client.responses.stream(model=MODEL, **req) as stream:
            events = list(stream)
            text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            self.assertEqual(text, ref.output_text)
            if events[-1].type == "response.completed":
                final = stream.get_final_response()
                self.assertEqual(final.output_text, text)
                self.assertEqual(final.id, events[-1].response.id)
            else:  # The SDK assembles a final response only from `response.completed`.
                self.assertEqual(events[-1].type, "response.incomplete")
                self.assertEqual(events[-1].response.output_text, text)

    def test_08_function_call(self):
        choices = {"required": "required", "named": {"type": "function", "name": "get_weather"}}
        for name, choice in choices.items():
            with self.subTest(tool_choice=name):
                resp = create(input="What is the weather in Paris?", tools=[WEATHER], tool_choice=choice,
                              temperature=0, max_output_tokens=300)
                self.assertEqual(resp.status, "completed", resp)
                calls = of_type(resp.output, "function_call")
                self.assertGreaterEqual(len(calls), 1, resp.output)
                if name == "named":
                    self.assertEqual(len(calls), 1, calls)
                for call in calls:
                    self.check_call(call)
                self.assertEqual(resp.output_text, "", "an answer made of calls has no text")

    def test_09_function_call_round_trip(self):
        question = user("What is the weather in Paris?")
        first = create(input=[question], tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"},
                       temperature=0, max_output_tokens=300)
        call = of_type(first.output, "function_call")[0]
        self.check_call(call)
        history = [question, *first.output,
                   {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp": 21})}]

        with self.subTest(tool_choice="none"):
            second = create(input=history, tools=[WEATHER], tool_choice="none", temperature=0,
                            max_output_tokens=40)
            self.assertIn(second.status, ("completed", "incomplete"))
            self.assertEqual(of_type(second.output, "function_call"), [])
            self.assertTrue(second.output_text.strip(), second)
            # With tool_choice none the tools are not described, so compare with the question alone.
            alone = create(input=[question], tools=[WEATHER], tool_choice="none", max_output_tokens=1)
            self.assertGreater(second.usage.input_tokens, alone.usage.input_tokens,
                               "the call and its output are part of the prompt")
            print(f"round trip: get_weather({call.arguments}) -> {second.output_text!r}")

        with self.subTest(tool_choice="auto"):
            # Whatever the model does next under `auto`, it is well-formed: text, or another valid call.
            second = create(input=history, tools=[WEATHER], temperature=0, max_output_tokens=300)
            self.assertIn(second.status, ("completed", "incomplete"))
            calls = of_type(second.output, "function_call")
            for c in calls:
                self.check_call(c)
            if not calls:
                self.assertTrue(second.output_text.strip(), second)

    def test_10_streamed_function_call(self):
        req = dict(input="What is the weather in Paris?", tools=[WEATHER], tool_choice="required",
                   temperature=0, max_output_tokens=300)
        ref = of_type(create(**req).output, "function_call")
        events = events_of(**req)
        types = [e.type for e in events]
        self.assertEqual(types[0], "response.created", types)
        self.assertEqual(types[-1], "response.completed", types)
        self.assertNotIn("response.output_text.delta", types)

        added = [e.item for e in of_type(events, "response.output_item.added")]
        self.assertEqual([item.type for item in added], ["function_call"] * len(ref), types)
        self.assertEqual(added[0].name, "get_weather")
        deltas = [e for e in of_type(events, "response.function_call_arguments.delta") if e.output_index == 0]
        self.assertTrue(deltas, types)
        arguments = "".join(d.delta for d in deltas)
        done = [e for e in of_type(events, "response.function_call_arguments.done") if e.output_index == 0]
        self.assertEqual(len(done), 1, types)
        self.assertEqual(done[0].arguments, arguments)
        self.assertEqual(done[0].item_id, added[0].id)

        item = [e.item for e in of_type(events, "response.output_item.done") if e.output_index == 0][0]
        self.assertEqual(item.arguments, arguments)
        self.assertEqual(item.call_id, added[0].call_id)
        self.check_call(item)
        final_calls = of_type(events[-1].response.output, "function_call")
        self.assertEqual(final_calls[0].arguments, arguments)
        self.assertEqual([(c.name, c.arguments) for c in final_calls], [(c.name, c.arguments) for c in ref],
                         "streamed and non-streamed greedy calls agree")

    def test_11_json_schema_output(self):
        fmt = {"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}}
        resp = create(input="Describe a person.", text=fmt, temperature=1.0, max_output_tokens=400)
        self.assertEqual(resp.status, "completed", resp.output_text)
        value = json.loads(resp.output_text)
        self.assertIsInstance(value, dict, resp.output_text)
        self.assertEqual(set(value), {"name", "age"}, resp.output_text)
        self.assertIsInstance(value["name"], str)
        self.assertLessEqual(len(value["name"]), 40)
        self.assertIsInstance(value["age"], int)
        self.assertNotIsInstance(value["age"], bool)
        self.assertTrue(0 <= value["age"] <= 120, value["age"])

    def test_12_json_object_output(self):
        resp = create(input="Give me JSON about a cat.", text={"format": {"type": "json_object"}},
                      temperature=1.0, max_output_tokens=400)
        self.assertEqual(resp.status, "completed", resp.output_text)
        self.assertIsInstance(json.loads(resp.output_text), dict, resp.output_text)

    def test_13_stored_responses_and_previous_response_id(self):
        first_input = "My name is Alice. Please remember it."
        first = create(input=first_input, max_output_tokens=16, temperature=0)
        got = client.responses.retrieve(first.id)
        self.assertEqual(got.id, first.id)
        self.assertEqual(got.object, "response")
        self.assertEqual(got.status, first.status)
        self.assertEqual(got.output_text, first.output_text)
        self.assertEqual(got.usage.input_tokens, first.usage.input_tokens)

        follow = create(input="What is my name?", previous_response_id=first.id, max_output_tokens=16,
                        temperature=0)
        self.assertIn(follow.status, ("completed", "incomplete"))
        self.assertTrue(follow.output_text.strip())
        self.assertEqual(follow.previous_response_id, first.id)
        self.assertGreater(follow.usage.input_tokens, first.usage.input_tokens + first.usage.output_tokens,
                           "the stored input and output are part of the follow-up's prompt")

        # Replaying the same history by hand (`input += response.output`) is the same prompt.
        replay = create(input=[user(first_input), *first.output, user("What is my name?")],
                        max_output_tokens=16, temperature=0)
        self.assertEqual(replay.usage.input_tokens, follow.usage.input_tokens)
        self.assertEqual(replay.output_text, follow.output_text)

    def test_14_store_false_and_delete(self):
        unstored = create(input="Say hi", store=False, max_output_tokens=4, temperature=0)
        with self.assertRaises(openai.NotFoundError) as caught:
            client.responses.retrieve(unstored.id)
        self.check_error(caught.exception, 404)

        stored = create(input="Say hi", max_output_tokens=4, temperature=0)
        self.assertEqual(client.responses.retrieve(stored.id).id, stored.id)
        self.assertIsNone(client.responses.delete(stored.id))
        with self.assertRaises(openai.NotFoundError):
            client.responses.retrieve(stored.id)
        with self.assertRaises(openai.NotFoundError) as caught:
            client.responses.delete(stored.id)
        self.check_error(caught.exception, 404)

    def test_15_metadata_is_echoed(self):
        resp = create(input="Say hi", metadata={"k": "v"}, max_output_tokens=4, temperature=0)
        self.assertEqual(resp.metadata, {"k": "v"})
        self.assertEqual(client.responses.retrieve(resp.id).metadata, {"k": "v"})

    def test_16_errors(self):
        cases = [
            # (name, request, SDK exception, status, param)
            ("unknown model", dict(model="no-such-model", input="Hi"), openai.NotFoundError, 404, "model"),
            ("unknown previous_response_id", dict(input="Hi", previous_response_id="resp_doesnotexist"),
             openai.NotFoundError, 404, None),
            ("negative max_output_tokens", dict(input="Hi", max_output_tokens=-1),
             openai.BadRequestError, 400, "max_output_tokens"),
            ("empty input list", dict(input=[]), openai.BadRequestError, 400, "input"),
        ]
        for name, body, exc_cls, status, param in cases:
            with self.subTest(case=name):
                with self.assertRaises(exc_cls) as caught:
                    create(**body)
                self.check_error(caught.exception, status, param)

        with self.subTest(case="malformed JSON"):
            r = httpx.post(f"{BASE_URL}/responses", content=b'{"model": ', timeout=TIMEOUT,
                           headers={"content-type": "application/json"})
            self.assertEqual(r.status_code, 400, r.text)
            self.assertEqual(r.json()["error"]["type"], "invalid_request_error", r.text)

        r = create(input="What is the capital of France?", max_output_tokens=8, temperature=0)
        self.assertTrue(r.output_text.strip(), "server alive after errors")


if __name__ == "__main__":
    unittest.main(verbosity=2)
