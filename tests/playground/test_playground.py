"""The web playground at `/` in a real headless Chromium, driven through WebDriver (`selenium`).

The Rust test `playground::a_real_browser_chats_with_the_real_model` starts two real Hearth servers on
127.0.0.1 with the real default model and runs

    HEARTH_URL=http://127.0.0.1:<port> HEARTH_KEYED_URL=http://127.0.0.1:<port> HEARTH_API_KEY=<key> \\
        HEARTH_MODEL=<id> HEARTH_EMBEDDING_MODEL=<id> HEARTH_ARTIFACTS=<dir> \\
        python3 tests/playground/test_playground.py

The first server is open and also serves the embedding model; the second needs HEARTH_API_KEY and runs
one request at a time with no queue, so a second request at once is a 429. The browser is Debian's
`chromium` with its `chromedriver`; it resolves no host name at all, and the tests read every request it
makes from its performance log. Screenshots are written to HEARTH_ARTIFACTS. Prompts and `max_tokens` are
small: CI decodes a few dozen tokens per second.
"""

import base64
import json
import os
import shutil
import sys
import time
import unittest

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

URL = os.environ["HEARTH_URL"].rstrip("/")
KEYED_URL = os.environ["HEARTH_KEYED_URL"].rstrip("/")
API_KEY = os.environ["HEARTH_API_KEY"]
MODEL = os.environ["HEARTH_MODEL"]
EMBEDDING_MODEL = os.environ["HEARTH_EMBEDDING_MODEL"]
ARTIFACTS = os.environ["HEARTH_ARTIFACTS"]
STORE = "hearth.playground.v1"
TIMEOUT = 120.0

driver = None


def setUpModule():
    global driver
    chromedriver = shutil.which("chromedriver")
    browser = next(
        (p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium")) if p and os.path.exists(p)), None
    )
    if not chromedriver or not browser:
        sys.exit("the playground test needs Chromium and its WebDriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,760",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # No host name resolves: the browser itself cannot reach beyond this machine either.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_script_timeout(30)


def tearDownModule():
    if driver:
        driver.quit()


def wait(condition, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def by_id(name):
    return driver.find_element(By.ID, name)


def running(base, key=None):
    """`hearth_requests_running` from the server's /metrics, over every loaded model."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    text = httpx.get(f"{base}/metrics", headers=headers, timeout=30).text
    lines = [l for l in text.splitlines() if l.startswith("hearth_requests_running{")]
    assert lines, text
    return sum(float(l.rsplit(" ", 1)[1]) for l in lines)


class Logs:
    """What the browser logged since this was made: console entries and every request it sent."""

    def __init__(self):
        self.console, self.requests, self.responses = [], [], []
        self.read()
        self.console, self.requests, self.responses = [], [], []

    def read(self):
        self.console += driver.get_log("browser")
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(params["request"])
            elif message["method"] == "Network.webSocketCreated":
                self.requests.append({"method": "WEBSOCKET", "url": params["url"]})
            elif message["method"] == "Network.responseReceived":
                self.responses.append(params["response"])
        return self

    def errors(self, expected_statuses=()):
        """Console errors, less the "Failed to load resource" lines of statuses a test provoked."""
        self.read()
        expected = [f"status of {s} " for s in expected_statuses]
        return [
            e
            for e in self.console
            if e["level"] == "SEVERE" and not any(s in e["message"] for s in expected)
        ]

    def foreign_requests(self, base):
        self.read()
        return [r["url"] for r in self.requests if not r["url"].startswith(base + "/")]

    def chat_requests(self):
        self.read()
        return [r for r in self.requests if r["url"].endswith("/v1/chat/completions")]


def open_page(base, clear=True):
    """Loads the playground at `base`, with empty storage unless `clear` is false."""
    driver.get(f"{base}/")
    if clear:
        driver.execute_script("localStorage.clear(); sessionStorage.clear();")
        driver.refresh()


def wait_for_models():
    wait(lambda: by_id("model").is_enabled(), "the model list")


def stored():
    return json.loads(driver.execute_script(f"return localStorage.getItem('{STORE}')") or "null")


def set_field(name, value):
    field = by_id(name)
    field.clear()
    field.send_keys(str(value))


def answers():
    return driver.find_elements(By.CSS_SELECTOR, "#log .message.assistant")


def wait_for_answer():
    """Waits until the last answer ended (Send enabled again) and has its statistics; returns its element."""
    wait(lambda: by_id("send").is_enabled() and not by_id("stop").is_enabled(), "the answer to end")
    answer = answers()[-1]
    wait(lambda: answer.find_element(By.CSS_SELECTOR, ".stats").text, "the answer's statistics")
    return answer


def screenshot_colours(path):
    """Decodes the PNG at `path` in a blank tab (no page, no CSP) and counts its colours."""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    page = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        return driver.execute_async_script(
            """
            const [data, done] = arguments;
            const image = new Image();
            image.onload = () => {
              const canvas = document.createElement("canvas");
              canvas.width = image.width;
              canvas.height = image.height;
              const context = canvas.getContext("2d");
              context.drawImage(image, 0, 0);
              const pixels = new Uint32Array(context.getImageData(0, 0, image.width, image.height).data.buffer);
              const counts = new Map();
              for (const p of pixels) counts.set(p, (counts.get(p) || 0) + 1);
              done({width: image.width, height: image.height, colours: counts.size,
                    commonest: Math.max(...counts.values()) / pixels.length});
            };
            image.onerror = () => done(null);
            image.src = "data:image/png;base64," + data;
            """,
            data,
        )
    finally:
        driver.close()
        driver.switch_to.window(page)


class PlaygroundTests(unittest.TestCase):
    maxDiff = None

    def assert_clean(self, logs, base=URL, expected_statuses=()):
        self.assertEqual(logs.errors(expected_statuses), [], "console errors")
        self.assertEqual(logs.foreign_requests(base), [], "requests that left the server's origin")

    def test_1_loads_offline_with_chat_models_only(self):
        logs = Logs()
        open_page(URL)
        wait_for_models()
        options = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#model option")]
        self.assertEqual(options, [MODEL], f"the embedding model {EMBEDDING_MODEL} is not a chat model")
        # The policy arrived with the page, and the page asked for its three files and the model list.
        page = next(r for r in logs.read().responses if r["url"] == f"{URL}/")
        policy = {k.lower(): v for k, v in page["headers"].items()}["content-security-policy"]
        self.assertIn("default-src 'self'", policy)
        self.assertIn("require-trusted-types-for 'script'", policy)
        urls = {r["url"] for r in logs.requests}
        for path in ["/", "/playground/app.js", "/playground/style.css", "/v1/models"]:
            self.assertIn(URL + path, urls)

        # Every control has a label, and Tab reaches the model, then the message box, then Send.
        unlabelled = driver.execute_script(
            """return [...document.querySelectorAll('input, select, textarea, button')]
                 .filter(e => !e.labels?.length && !e.textContent.trim() && !e.getAttribute('aria-label'))
                 .map(e => e.id)"""
        )
        self.assertEqual(unlabelled, [])
        driver.execute_script("document.activeElement.blur()")
        order = []
        for _ in range(25):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            order.append(driver.execute_script("return document.activeElement.id"))
        steps = [order.index(i) for i in ["model", "new-chat", "system", "temperature", "prompt", "send"]]
        self.assertEqual(steps, sorted(steps), f"focus order {order}")

        # A phone's width: nothing wider than the screen, and the picker and the message box on it, with the
        # settings folded (as they start there) and open.
        try:
            driver.set_window_size(390, 844)
            open_page(URL, clear=False)
            wait_for_models()
            self.assertFalse(driver.execute_script("return document.getElementById('settings-panel').open"))
            for settings in ["folded", "open"]:
                if settings == "open":
                    driver.find_element(By.CSS_SELECTOR, "#settings-panel summary").click()
                driver.save_screenshot(os.path.join(ARTIFACTS, f"playground-phone-{settings}.png"))
                width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
                overflow = driver.execute_script("return document.documentElement.scrollWidth")
                self.assertLessEqual(overflow, width, f"settings {settings}")
                for name in ["model", "prompt", "send"]:
                    box = driver.execute_script(
                        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.right, r.bottom]",
                        by_id(name),
                    )
                    visible = box[0] >= 0 and box[1] <= width and box[2] <= height
                    self.assertTrue(visible, f"#{name} at {box} with settings {settings}")
        finally:
            driver.set_window_size(1100, 760)

        # Dark follows the system setting.
        background = "return getComputedStyle(document.body).backgroundColor"
        light = driver.execute_script(background)
        dark_mode = [{"name": "prefers-color-scheme", "value": "dark"}]
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": dark_mode})
        dark = driver.execute_script(background)
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        self.assertNotEqual(light, dark)
        self.assert_clean(logs)

    def test_2_streamed_answer_equals_the_non_streamed_one(self):
        open_page(URL)
        wait_for_models()
        logs = Logs()
        set_field("system", "You are a concise assistant.")
        set_field("temperature", 0)
        set_field("max-tokens", 40)
        prompt = by_id("prompt")
        prompt.send_keys("List three fruits,", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "one per line.")
        self.assertEqual(prompt.get_attribute("value"), "List three fruits,\none per line.")
        self.assertEqual(answers(), [], "Shift+Enter sent the message")
        prompt.send_keys(Keys.ENTER)
        answer = wait_for_answer()

        [sent] = logs.chat_requests()
        request = json.loads(sent["postData"])
        self.assertEqual(request["messages"], [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "List three fruits,\none per line."},
        ])
        self.assertEqual((request["stream"], request["stream_options"]), (True, {"include_usage": True}))
        self.assertEqual((request["model"], request["temperature"], request["max_tokens"]), (MODEL, 0, 40))

        # The same request, not streamed, straight from here.
        request.update(stream=False)
        del request["stream_options"]
        folded = httpx.post(f"{URL}/v1/chat/completions", json=request, timeout=TIMEOUT).json()
        expected = folded["choices"][0]["message"]["content"]
        [conversation] = stored()["conversations"]
        kept = conversation["messages"][-1]
        self.assertEqual(kept["content"], expected)
        self.assertEqual(kept["stats"]["usage"]["completion_tokens"], folded["usage"]["completion_tokens"])
        self.assertNotIn("`", expected, "pick a prompt whose answer has no code: it is compared as plain text")
        shown = answer.find_element(By.CSS_SELECTOR, ".text").text
        self.assertEqual(shown.split(), expected.split())
        stats = answer.find_element(By.CSS_SELECTOR, ".stats").text
        usage = folded["usage"]
        self.assertIn(f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens", stats)
        self.assertRegex(stats, r"first token \d+\.\d\d s")
        if usage["completion_tokens"] > 1:
            self.assertRegex(stats, r"\d+\.\d tokens/s")
        self.assert_clean(logs)

        path = os.path.join(ARTIFACTS, "playground.png")
        driver.save_screenshot(path)
        picture = screenshot_colours(path)
        self.assertIsNotNone(picture, "the screenshot is not a PNG")
        self.assertGreater(picture["colours"], 20, f"a blank screenshot: {picture}")
        self.assertLess(picture["commonest"], 0.95, f"a blank screenshot: {picture}")
        Logs()  # the blank tab's own data: image is not the page's

    def test_3_stop_ends_the_stream_and_frees_the_sequence(self):
        open_page(URL)
        wait_for_models()
        logs = Logs()
        set_field("temperature", 0)
        set_field("max-tokens", 2000)
        by_id("prompt").send_keys("Write a long story about a dragon who learns to bake bread.", Keys.ENTER)
        text = lambda: driver.execute_script("return document.querySelector('#log .assistant .text').textContent")
        wait(lambda: len(text()) > 20, "the answer to start")
        self.assertTrue(by_id("stop").is_enabled())
        self.assertEqual(running(URL), 1)
        by_id("stop").click()
        wait(lambda: by_id("send").is_enabled() and not by_id("stop").is_enabled(), "the stream to end", 5)
        shown = text()
        time.sleep(1)
        self.assertEqual(text(), shown, "text kept coming after Stop")
        self.assertIn("stopped", answers()[-1].find_element(By.CSS_SELECTOR, ".stats").text)
        wait(lambda: running(URL) == 0, "hearth_requests_running to return to 0", 5)
        kept = stored()["conversations"][0]["messages"][-1]
        self.assertTrue(kept["stats"]["stopped"])
        self.assertEqual(kept["content"].strip(), shown.strip())
        self.assert_clean(logs)

    def test_4_model_output_is_shown_as_text(self):
        # The model's output is random, so this answer is put in the stored conversation. Stored and
        # streamed answers are drawn by the same code (showMessage -> update -> renderText), which every
        # streamed token of test 2 and 3 went through.
        hostile = (
            'Here: <img src=x onerror="window.pwned = 1"> and <script>window.pwned = 2</script>\n\n'
            "Inline `<b>bold</b>` and <i>italic</i>.\n\n"
            "```html\n<iframe src=\"/v1/models\"></iframe>\n<svg onload=\"window.pwned = 3\"></svg>\n```"
        )
        conversation = {"id": "x", "title": "hostile", "system": "", "messages": [
            {"role": "user", "content": "<script>window.pwned = 4</script>"},
            {"role": "assistant", "content": hostile, "model": MODEL, "stats": {}},
        ]}
        open_page(URL)
        driver.execute_script(
            "localStorage.setItem(arguments[0], arguments[1])",
            STORE,
            json.dumps({"settings": {}, "conversations": [conversation], "current": "x"}),
        )
        logs = Logs()
        open_page(URL, clear=False)
        wait_for_models()
        markup = driver.execute_script(
            "return document.querySelectorAll('#log img, #log script, #log iframe, #log svg, #log b, #log i').length"
        )
        self.assertEqual(markup, 0, "model output became elements")
        self.assertIsNone(driver.execute_script("return window.pwned ?? null"))
        text = driver.execute_script("return document.getElementById('log').textContent")
        for literal in ['<img src=x onerror="window.pwned = 1">', "<script>window.pwned = 2</script>",
                        "<b>bold</b>", "<i>italic</i>", '<iframe src="/v1/models"></iframe>',
                        "<script>window.pwned = 4</script>"]:
            self.assertIn(literal, text)
        code = driver.find_element(By.CSS_SELECTOR, "#log .assistant figure.code pre code")
        self.assertIn('<svg onload="window.pwned = 3"></svg>', code.get_attribute("textContent"))
        self.assert_clean(logs)

    def test_5_asks_for_the_key_and_then_works(self):
        logs = Logs()
        open_page(KEYED_URL)
        dialog_open = "return document.getElementById('key-dialog').open"
        wait(lambda: driver.execute_script(dialog_open), "the key question")
        self.assertIn("needs an API key", by_id("key-reason").text)
        by_id("key").send_keys("sk-wrong", Keys.ENTER)
        wait(lambda: "refused" in by_id("key-reason").text, "the wrong key to be refused")
        self.assertTrue(driver.execute_script(dialog_open))
        by_id("key").send_keys(API_KEY, Keys.ENTER)
        wait_for_models()
        self.assertFalse(driver.execute_script(dialog_open))
        self.assertEqual(driver.execute_script("return sessionStorage.getItem('hearth.playground.key')"), API_KEY)

        set_field("max-tokens", 8)
        by_id("prompt").send_keys("Say hello.", Keys.ENTER)
        wait_for_answer()
        self.assertTrue(stored()["conversations"][0]["messages"][-1]["content"])
        self.assertNotIn(API_KEY, driver.execute_script("return JSON.stringify(localStorage)"))
        [sent] = logs.chat_requests()
        headers = {k.lower(): v for k, v in sent["headers"].items()}
        self.assertEqual(headers.get("authorization"), f"Bearer {API_KEY}")
        self.assert_clean(logs, KEYED_URL, expected_statuses=[401])

    def test_6_errors_are_shown_in_words(self):
        # The key from test 5 is still in this tab's session storage.
        open_page(KEYED_URL, clear=False)
        wait_for_models()
        by_id("new-chat").click()
        logs = Logs()
        prompt = by_id("prompt")
        notice = lambda: by_id("notice").text if by_id("notice").is_displayed() else ""

        long = "hello " * 9000
        driver.execute_script("arguments[0].value = arguments[1]", prompt, long)
        by_id("send").click()
        wait(lambda: "too long for the model's context" in notice(), "the context error")
        self.assertEqual(prompt.get_attribute("value"), long, "the message was not given back")
        self.assertEqual(answers(), [])

        set_field("prompt", "Hi")
        set_field("max-tokens", 100000)
        by_id("send").click()
        wait(lambda: "Max tokens is more than the model's context leaves" in notice(), "the max_tokens error")
        set_field("max-tokens", 8)
        set_field("temperature", 5)
        by_id("send").click()
        wait(lambda: "refused the request: `temperature` must be between 0 and 2" in notice(), "the 400 in words")
        set_field("temperature", 0)

        # The keyed server admits one request at a time: hold it from here, and the page's is refused. The
        # held stream's line iterator is kept: dropping it would close the response and free the slot.
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to one hundred."}],
                "max_tokens": 4000, "ignore_eos": True, "stream": True}
        headers = {"Authorization": f"Bearer {API_KEY}"}
        wait(lambda: running(KEYED_URL, API_KEY) == 0, "the keyed server to be idle", 60)
        with httpx.stream("POST", f"{KEYED_URL}/v1/chat/completions", json=body, headers=headers,
                          timeout=TIMEOUT) as held:
            self.assertEqual(held.status_code, 200, "the held request was admitted")
            lines = held.iter_lines()
            next(lines)
            set_field("prompt", "Hi")
            by_id("send").click()
            try:
                wait(lambda: "busy" in notice(), "the 429 in words")
            except AssertionError as e:
                raise AssertionError(f"{e}; notice {notice()!r}; answers {[a.text for a in answers()]!r}") from None
            lines.close()
        self.assertIn("Try again in 1 s", notice())
        wait(lambda: running(KEYED_URL, API_KEY) == 0, "the held request to end", 10)
        self.assertEqual(answers(), [])
        self.assert_clean(logs, KEYED_URL, expected_statuses=[400, 429])


if __name__ == "__main__":
    unittest.main(verbosity=2)
