"""Function calling through the OpenAI Python SDK: `tools`, `tool_choice`, `parallel_tool_calls`, and a
two-turn agent loop.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct:

    HEARTH_BASE_URL=http://127.0.0.1:<port>/v1 HEARTH_MODEL=<model id> python3 tests/sdk/test_tools.py

The model is tiny and sampled at temperature 1: well-formed calls come from constrained decoding, not from
the model, so every call must parse and validate against its function's schema however odd its content.
"""

import json
import os
import unittest

import openai

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
MODEL = os.environ["HEARTH_MODEL"]
TIMEOUT = 120.0

client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=TIMEOUT)

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "maxLength": 60},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 10}},
            "required": ["query", "max_results"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "get_time", "description": "The current time."}},
]

PROMPTS = [
    "What is the weather in Paris?", "Search for the best pizza in Rome.", "What time is it?",
    "Is it raining in London?", "Find news about rockets.", "How hot is it in Cairo, in fahrenheit?",
    "Look up the population of Japan.", "Tell me a joke.", "What's the weather like in Tokyo today?",
    "Search for Rust tutorials.", "Should I take an umbrella in Berlin?", "Who wrote Hamlet?",
    "Give me the time, please.", "Weather in New York in celsius.", "Find a recipe for pancakes.",
    "Hello!", "What is 2 + 2?", "Check the weather in Sydney.", "Search: cheap flights to Lisbon.",
    "Describe a cat.",
]


FEW_SHOT = []
for _i, (_city, _unit) in enumerate([("Paris", "celsius"), ("Denver", "fahrenheit"), ("Madrid", "celsius")]):
    FEW_SHOT += [
        {"role": "user", "content": f"What is the weather in {_city}?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{_i}", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": _city, "unit": _unit})}}]},
        {"role": "tool", "tool_call_id": f"call_{_i}", "content": "sunny"},
        {"role": "assistant", "content": f"It is sunny in {_city}."},
    ]


def check_call(test, name, arguments):
    """A call names a declared function and its arguments validate against that function's schema (checked
    by hand: jsonschema is not installed in the test venv)."""
    args = json.loads(arguments)
    test.assertIsInstance(args, dict, arguments)
    if name == "get_weather":
        test.assertEqual(set(args), {"city", "unit"}, arguments)
        test.assertIsInstance(args["city"], str)
        test.assertLessEqual(len(args["city"]), 30)
        test.assertIn(args["unit"], ("celsius", "fahrenheit"))
    elif name == "search":
        test.assertEqual(set(args), {"query", "max_results"}, arguments)
        test.assertIsInstance(args["query"], str)
        test.assertLessEqual(len(args["query"]), 60)
        test.assertIsInstance(args["max_results"], int)
        test.assertTrue(1 <= args["max_results"] <= 10, arguments)
    elif name == "get_time":
        test.assertEqual(args, {}, arguments)
    else:
        test.fail(f"called an undeclared function {name!r}")


def create(prompt, seed, stream=False, temperature=1.0, max_tokens=300, **kw):
    """(content, [(id, name, arguments)], finish_reason) of one answer, streamed or not."""
    kw = dict(model=MODEL, messages=[{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
              temperature=temperature, seed=seed, max_tokens=max_tokens, tools=TOOLS, **kw)
    if not stream:
        r = client.chat.completions.create(**kw)
        m = r.choices[0].message
        calls = [(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []]
        for c in m.tool_calls or []:
            assert c.type == "function", c
        return m.content, calls, r.choices[0].finish_reason
    content, calls, reason = None, [], None
    for chunk in client.chat.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            if choice.delta.content:
                content = (content or "") + choice.delta.content
            for d in choice.delta.tool_calls or []:
                if d.id is not None:
                    assert d.index == len(calls), d
                    assert d.type == "function", d
                    calls.append([d.id, d.function.name, ""])
                calls[d.index][2] += d.function.arguments or ""
            reason = choice.finish_reason or reason
    return content, [tuple(c) for c in calls], reason


class ToolTests(unittest.TestCase):
    def check_answer(self, content, calls, reason):
        for call_id, name, arguments in calls:
            self.assertTrue(call_id.startswith("call_"), call_id)
            check_call(self, name, arguments)
        if calls:
            self.assertEqual(reason, "tool_calls", (content, calls))
        else:
            self.assertIsInstance(content, str)
            self.assertIn(reason, ("stop", "length"))

    def test_01_required_always_gives_valid_calls(self):
        for i, prompt in enumerate(PROMPTS):
            for stream in (False, True):
                with self.subTest(prompt=prompt, stream=stream):
                    content, calls, reason = create(prompt, i, stream, tool_choice="required")
                    self.assertGreaterEqual(len(calls), 1, content)
                    self.assertFalse(content, "an answer made of calls has no content")
                    self.check_answer(content, calls, reason)

    def test_02_a_named_function_is_called(self):
        for i, prompt in enumerate(PROMPTS[:6]):
            with self.subTest(prompt=prompt):
                choice = {"type": "function", "function": {"name": "search"}}
                content, calls, reason = create(prompt, 50 + i, tool_choice=choice)
                self.assertEqual(len(calls), 1, calls)
                self.assertEqual(calls[0][1], "search")
                self.check_answer(content, calls, reason)

    def test_03_streamed_calls_accumulate_to_the_whole_ones(self):
        for i, prompt in enumerate(PROMPTS[:5]):
            with self.subTest(prompt=prompt):
                whole = create(prompt, 7, False, temperature=0, tool_choice="required")
                streamed = create(prompt, 7, True, temperature=0, tool_choice="required")
                self.assertEqual([c[1:] for c in streamed[1]], [c[1:] for c in whole[1]])
                self.assertEqual(streamed[2], whole[2])

    def test_04_auto_never_gives_a_malformed_call(self):
        chose = 0
        for i, prompt in enumerate(PROMPTS):
            for stream in (False, True):
                with self.subTest(prompt=prompt, stream=stream):
                    content, calls, reason = create(prompt, 200 + i, stream, max_tokens=120)
                    chose += bool(calls)
                    self.check_answer(content, calls, reason)
        print(f"auto: {chose} of {2 * len(PROMPTS)} answers were calls")
        # With earlier calls in the history the model imitates them, so `auto` takes the call path too.
        chose = 0
        for i, prompt in enumerate(PROMPTS):
            for stream in (False, True):
                with self.subTest(prompt=prompt, stream=stream, history=True):
                    messages = FEW_SHOT + [{"role": "user", "content": prompt}]
                    content, calls, reason = create(messages, 400 + i, stream, max_tokens=120)
                    chose += bool(calls)
                    self.check_answer(content, calls, reason)
        print(f"auto after earlier calls: {chose} of {2 * len(PROMPTS)} answers were calls")
        self.assertGreater(chose, 0, "the call path of `auto` was never taken")

    def test_05_parallel_tool_calls_false_gives_one_call(self):
        for i, prompt in enumerate(PROMPTS[:6]):
            with self.subTest(prompt=prompt):
                content, calls, reason = create(prompt, 300 + i, tool_choice="required", parallel_tool_calls=False)
                self.assertEqual(len(calls), 1, calls)
                self.check_answer(content, calls, reason)

    def test_06_agent_loop_call_then_result_then_answer(self):
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        first = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0,
                                               max_tokens=300, tool_choice={"type": "function",
                                                                            "function": {"name": "get_weather"}})
        call = first.choices[0].message.tool_calls[0]
        self.assertEqual(first.choices[0].finish_reason, "tool_calls")
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": json.dumps({"temperature": 22, "unit": "celsius", "sky": "sunny"})})
        second = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0,
                                                max_tokens=60, tool_choice="none")
        answer = second.choices[0]
        self.assertIsNone(answer.message.tool_calls)
        self.assertTrue(answer.message.content.strip(), answer)
        self.assertIn(answer.finish_reason, ("stop", "length"))
        print(f"agent loop: {call.function.name}({call.function.arguments}) -> {answer.message.content!r}")
        # The whole loop again with `auto`: whatever the model does next is well-formed.
        content, calls, reason = create(messages, 1, temperature=0)
        self.check_answer(content, calls, reason)

    def test_07_bad_tool_requests_are_400s_naming_the_field(self):
        bad_schema = [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}}}}]
        cases = [
            (dict(tools=bad_schema), "tools"),
            (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
            (dict(tool_choice="required"), "tool_choice"),
            (dict(tools=[{"type": "function", "function": {"name": "two words"}}]), "tools[0].function.name"),
        ]
        for kw, param in cases:
            with self.subTest(param=param, kw=kw):
                with self.assertRaises(openai.BadRequestError) as caught:
                    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], **kw)
                self.assertEqual(caught.exception.status_code, 400)
                self.assertEqual(caught.exception.body["param"], param)


if __name__ == "__main__":
    unittest.main(verbosity=2)
