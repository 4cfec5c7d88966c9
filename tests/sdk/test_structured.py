"""Structured outputs through the OpenAI Python SDK: `response_format` json_object and json_schema.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct:

    HEARTH_BASE_URL=http://127.0.0.1:<port>/v1 HEARTH_MODEL=<model id> python3 tests/sdk/test_structured.py

The model is tiny and sampled at temperature 1: validity comes from constrained decoding, not from the
model, so every output must parse (and validate) however odd its content.
"""

import json
import os
import unittest
from typing import List

import httpx
import openai
import pydantic

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
MODEL = os.environ["HEARTH_MODEL"]
TIMEOUT = 120.0

client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=TIMEOUT)

PROMPTS = [
    "Describe a person.", "Give me JSON about a cat.", "Invent a fantasy character.", "Who won the match?",
    "List three fruits.", "What is the weather like?", "Tell me about Paris.", "Write a recipe.",
    "Describe your favourite book.", "Summarise the news.", "Plan a trip to Rome.", "Name a planet.",
    "Explain photosynthesis.", "Create a user profile.", "Describe a car.", "Give me a movie review.",
    "What is 2 + 2?", "Describe a dog.", "Make up a company.", "Say hello.",
]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}


def check_person(test, value):
    """The schema above, checked by hand (jsonschema is not installed in the test venv)."""
    test.assertIsInstance(value, dict)
    test.assertEqual(set(value), {"name", "age", "hobbies"})
    test.assertIsInstance(value["name"], str)
    test.assertLessEqual(len(value["name"]), 40)
    test.assertIsInstance(value["age"], int)
    test.assertTrue(0 <= value["age"] <= 120, value["age"])
    test.assertIsInstance(value["hobbies"], list)
    test.assertLessEqual(len(value["hobbies"]), 3)
    for hobby in value["hobbies"]:
        test.assertIsInstance(hobby, str)
        test.assertLessEqual(len(hobby), 30)


def create(prompt, seed, response_format, stream=False):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": prompt}], temperature=1.0, seed=seed,
              max_tokens=400, response_format=response_format)
    if not stream:
        r = client.chat.completions.create(**kw)
        return r.choices[0].message.content, r.choices[0].finish_reason
    text, reason = "", None
    for chunk in client.chat.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            reason = choice.finish_reason or reason
    return text, reason


class StructuredTests(unittest.TestCase):
    def test_01_json_object_always_parses(self):
        for i, prompt in enumerate(PROMPTS):
            for stream in (False, True):
                with self.subTest(prompt=prompt, stream=stream):
                    text, reason = create(prompt, i, {"type": "json_object"}, stream)
                    self.assertEqual(reason, "stop", text)
                    self.assertIsInstance(json.loads(text), dict, text)

    def test_02_json_schema_always_validates(self):
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
        for i, prompt in enumerate(PROMPTS):
            for stream in (False, True):
                with self.subTest(prompt=prompt, stream=stream):
                    text, reason = create(prompt, 100 + i, fmt, stream)
                    self.assertEqual(reason, "stop", text)
                    check_person(self, json.loads(text))

    def test_03_sdk_parse_with_a_pydantic_model(self):
        class Person(pydantic.BaseModel):
            name: str
            age: int
            hobbies: List[str]

        r = client.beta.chat.completions.parse(
            model=MODEL, messages=[{"role": "user", "content": "Describe a person."}], temperature=1.0, seed=7,
            max_tokens=400, response_format=Person)
        person = r.choices[0].message.parsed
        self.assertIsInstance(person, Person)
        self.assertIsInstance(person.age, int)

    def test_04_unservable_formats_are_a_400_naming_response_format(self):
        bad = [
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                           "properties": {"a": {"type": "nope"}}}}},
            {"type": "json_schema", "json_schema": {"name": "x"}},
            {"type": "yaml"},
        ]
        for fmt in bad:
            with self.subTest(fmt=fmt):
                r = httpx.post(f"{BASE_URL}/chat/completions", timeout=TIMEOUT, json={
                    "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "response_format": fmt})
                self.assertEqual(r.status_code, 400, r.text)
                self.assertEqual(r.json()["error"]["param"], "response_format")

    def test_05_text_format_is_unconstrained(self):
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi."}],
                                           temperature=0, max_tokens=8, response_format={"type": "text"})
        plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi."}],
                                               temperature=0, max_tokens=8)
        self.assertEqual(r.choices[0].message.content, plain.choices[0].message.content)


if __name__ == "__main__":
    unittest.main(verbosity=2)
