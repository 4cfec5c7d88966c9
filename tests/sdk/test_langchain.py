"""LangChain's chat models against Hearth: `ChatOpenAI` on the Responses API and `ChatAnthropic` on the Messages
API, one greedy round trip each, whole and streamed.

Run by the Rust harness (tests/sdk.rs) against a real Hearth server serving SmolLM2-135M-Instruct:

    HEARTH_BASE_URL=http://127.0.0.1:<port>/v1 HEARTH_MODEL=<model id> python3 tests/sdk/test_langchain.py

Nothing here may leave 127.0.0.1: LangSmith tracing is switched off, and nothing counts tokens with tiktoken
(`get_num_tokens` would download its encodings).
"""

import os

os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"

import unittest  # noqa: E402

from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

BASE_URL = os.environ["HEARTH_BASE_URL"].rstrip("/")
MODEL = os.environ["HEARTH_MODEL"]
ROOT_URL = BASE_URL[: -len("/v1")] if BASE_URL.endswith("/v1") else BASE_URL
API_KEY = os.environ.get("HEARTH_API_KEY") or "unused"
TIMEOUT = 120.0

PROMPT = "Say hi"


class LangChainTests(unittest.TestCase):
    def check_round_trip(self, llm):
        """A whole answer has text and usage, and the streamed chunks add up to it."""
        whole = llm.invoke(PROMPT)
        text = str(whole.text)
        self.assertTrue(text.strip(), whole)
        self.assertGreater(whole.usage_metadata["input_tokens"], 0, whole.usage_metadata)
        self.assertGreater(whole.usage_metadata["output_tokens"], 0, whole.usage_metadata)

        chunks = list(llm.stream(PROMPT))
        self.assertGreater(len(chunks), 1, "the answer arrives in pieces")
        self.assertEqual("".join(str(c.text) for c in chunks), text, "streamed and whole greedy answers agree")
        return text

    def test_01_chat_openai_responses_api(self):
        llm = ChatOpenAI(base_url=BASE_URL, api_key=API_KEY, model=MODEL, use_responses_api=True, temperature=0,
                         max_tokens=16, max_retries=0, timeout=TIMEOUT)
        print(f"ChatOpenAI: {self.check_round_trip(llm)!r}")

    def test_02_chat_anthropic(self):
        llm = ChatAnthropic(base_url=ROOT_URL, api_key=API_KEY, model=MODEL, temperature=0, max_tokens=16,
                            max_retries=0, timeout=TIMEOUT)
        print(f"ChatAnthropic: {self.check_round_trip(llm)!r}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
