// Hearth's playground: a chat with the served models over this server's own OpenAI API.
//
// Requests go only to this origin: GET /v1/models and POST /v1/chat/completions (streamed). Conversations
// and settings stay in this browser's localStorage; an API key, when the server asks for one, stays in this
// tab's sessionStorage. Model output is untrusted text: it becomes DOM text nodes only (renderText), never
// HTML, and the page's Content-Security-Policy forbids HTML sinks altogether (Trusted Types, no policy).

const STORE = "hearth.playground.v1";
const KEY = "hearth.playground.key";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), newChat: $("new-chat"), system: $("system"), temperature: $("temperature"),
  topP: $("top-p"), maxTokens: $("max-tokens"), setKey: $("set-key"), history: $("history"),
  deleteChat: $("delete-chat"), log: $("log"), notice: $("notice"), composer: $("composer"),
  prompt: $("prompt"), send: $("send"), stop: $("stop"), keyDialog: $("key-dialog"),
  keyForm: $("key-form"), keyReason: $("key-reason"), key: $("key"),
};

/** Everything kept in localStorage: `{ settings, conversations: [{ id, title, system, messages }], current }`. */
const store = loadStore();
/** The answer being streamed: `{ controller }`, or null. */
let running = null;
/** The pending API-key question, shared by every request that met a 401. */
let keyQuestion = null;

function loadStore() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(STORE));
  } catch {
    saved = null;
  }
  const fresh = { settings: {}, conversations: [], current: null };
  if (!saved || !Array.isArray(saved.conversations)) return fresh;
  return { ...fresh, ...saved, settings: saved.settings || {} };
}

function save() {
  try {
    localStorage.setItem(STORE, JSON.stringify(store));
  } catch (error) {
    notice(`This browser did not keep the conversation (${error.message}).`);
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function notice(text) {
  ui.notice.textContent = text || "";
  ui.notice.hidden = !text;
}

// ---------------------------------------------------------------- rendering untrusted text

/** Renders `text` into `container` as paragraphs, ``` code blocks and `inline code`, all as text nodes. */
function renderText(container, text) {
  const blocks = [];
  let paragraph = [];
  let code = null;
  const endParagraph = () => {
    if (paragraph.length) blocks.push(paragraphOf(paragraph.join("\n")));
    paragraph = [];
  };
  for (const line of text.split("\n")) {
    const fence = /^\s*```\s*([^`\s]*)\s*$/.exec(line);
    if (code) {
      if (fence && !fence[1]) {
        blocks.push(codeBlock(code));
        code = null;
      } else {
        code.lines.push(line);
      }
    } else if (fence) {
      endParagraph();
      code = { language: fence[1], lines: [] };
    } else if (line.trim()) {
      paragraph.push(line);
    } else {
      endParagraph();
    }
  }
  endParagraph();
  if (code) blocks.push(codeBlock(code)); // still streaming, or never closed
  container.replaceChildren(...blocks);
}

function paragraphOf(text) {
  const p = element("p");
  text.split(/(`[^`\n]+`)/).forEach((part, i) => {
    if (i % 2) p.append(element("code", "", part.slice(1, -1)));
    else if (part) p.append(part); // a string argument becomes a text node
  });
  return p;
}

function codeBlock({ language, lines }) {
  const figure = element("figure", "code");
  if (language) figure.append(element("figcaption", "", language));
  const pre = element("pre");
  pre.append(element("code", "", lines.join("\n")));
  figure.append(pre);
  return figure;
}

// ---------------------------------------------------------------- conversations

function current() {
  let conversation = store.conversations.find((c) => c.id === store.current);
  if (!conversation) {
    conversation = { id: newId(), title: "", system: ui.system.value, messages: [] };
    store.conversations.unshift(conversation);
    store.current = conversation.id;
  }
  return conversation;
}

function newId() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

/** Starts a conversation (keeping the system prompt), unless the current one is still empty. */
function startNewChat() {
  if (current().messages.length) {
    store.current = null;
    current();
  }
  save();
  showConversation();
  ui.prompt.focus();
}

function deleteChat() {
  store.conversations = store.conversations.filter((c) => c.id !== store.current);
  store.current = store.conversations.length ? store.conversations[0].id : null;
  save();
  showConversation();
}

function showConversation() {
  const conversation = current();
  ui.system.value = conversation.system || "";
  ui.log.replaceChildren();
  for (const message of conversation.messages) showMessage(message);
  showHistory();
  ui.log.scrollTop = ui.log.scrollHeight;
}

function showHistory() {
  const items = store.conversations
    .filter((c) => c.messages.length || c.id === store.current)
    .map((conversation) => {
      const button = element("button", "", conversation.title || "New chat");
      button.type = "button";
      if (conversation.id === store.current) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => {
        if (running) return;
        store.current = conversation.id;
        save();
        showConversation();
      });
      const item = element("li");
      item.append(button);
      return item;
    });
  ui.history.replaceChildren(...items);
}

/** Adds one message to the log; stored and streamed messages both go through here and `renderText`. */
function showMessage(message) {
  const article = element("article", `message ${message.role}`);
  const who = message.role === "user" ? "You" : `Answer${message.model ? ` · ${message.model}` : ""}`;
  article.append(element("h2", "who", who));
  const reasoning = element("details", "reasoning");
  reasoning.append(element("summary", "", "Reasoning"));
  const reasoningText = element("div");
  reasoning.append(reasoningText);
  const body = element("div", "text");
  const stats = element("p", "stats");
  article.append(reasoning, body, stats);
  ui.log.append(article);
  const view = { article, body, stats, reasoning, reasoningText };
  update(view, message);
  return view;
}

function update(view, message) {
  renderText(view.body, String(message.content ?? ""));
  view.reasoning.hidden = !message.reasoning;
  if (message.reasoning) renderText(view.reasoningText, String(message.reasoning));
  view.stats.textContent = describeStats(message);
}

function describeStats(message) {
  const stats = message.stats;
  if (!stats) return "";
  const parts = [];
  if (stats.ttft !== undefined) parts.push(`first token ${(stats.ttft / 1000).toFixed(2)} s`);
  if (stats.tokensPerSecond) parts.push(`${stats.tokensPerSecond.toFixed(1)} tokens/s`);
  if (stats.usage) {
    parts.push(`${stats.usage.prompt_tokens} prompt + ${stats.usage.completion_tokens} completion tokens`);
  }
  if (stats.finish === "length") parts.push("cut at max tokens");
  if (stats.stopped) parts.push("stopped");
  if (stats.error) parts.push("failed");
  return parts.join(" · ");
}

// ---------------------------------------------------------------- the API

/** `fetch` on this origin with the API key when one is kept; a 401 asks for a key and tries again. */
async function api(path, init = {}) {
  for (;;) {
    const headers = new Headers(init.headers);
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...init, headers, credentials: "omit", cache: "no-store" });
    if (response.status !== 401) return response;
    const refused = await explain(response);
    ui.setKey.hidden = false;
    await askKey(key ? `The server refused this key: ${refused}` : "This server needs an API key.");
  }
}

function askKey(reason) {
  if (keyQuestion) return keyQuestion;
  ui.keyReason.textContent = reason;
  ui.key.value = "";
  keyQuestion = new Promise((resolve, reject) => {
    const done = (event) => {
      event.preventDefault();
      ui.keyForm.removeEventListener("submit", done);
      ui.keyDialog.removeEventListener("cancel", cancel);
      keyQuestion = null;
      if (event.type === "cancel") {
        ui.keyDialog.close();
        reject(new Error("This server needs an API key: choose Change API key in Settings to enter one."));
        return;
      }
      sessionStorage.setItem(KEY, ui.key.value.trim());
      ui.keyDialog.close();
      resolve();
    };
    const cancel = done;
    ui.keyForm.addEventListener("submit", done);
    ui.keyDialog.addEventListener("cancel", cancel);
  });
  ui.keyDialog.showModal();
  ui.key.focus();
  return keyQuestion;
}

/** An error response in words. */
async function explain(response) {
  let error = {};
  try {
    error = (await response.json()).error || {};
  } catch {
    error = {};
  }
  return inWords(response.status, error, response.headers.get("Retry-After"));
}

function inWords(status, error, retryAfter) {
  const message = error.message || `HTTP ${status}`;
  if (status === 429) {
    const wait = retryAfter ? `in ${retryAfter} s` : "in a moment";
    return `The server is busy: too many requests at once. Try again ${wait}. (${message})`;
  }
  if (error.code === "context_length_exceeded" && error.param === "max_tokens") {
    const advice = "lower it, or start a new chat";
    return `Max tokens is more than the model's context leaves for the answer: ${advice}. (${message})`;
  }
  if (error.code === "context_length_exceeded") {
    const advice = "start a new chat, or shorten the message or the system prompt";
    return `The conversation is too long for the model's context: ${advice}. (${message})`;
  }
  if (status === 401) return message;
  if (status === 400) return `The server refused the request: ${message}`;
  if (status === 404) return `Not found: ${message}`;
  if (status >= 500) return `The server failed: ${message}`;
  if (!status) return `The answer ended with an error: ${message}`;
  return `Error ${status}: ${message}`;
}

async function loadModels() {
  try {
    const response = await api("/v1/models");
    if (!response.ok) throw new Error(await explain(response));
    const { data } = await response.json();
    // `capabilities` is Hearth's extension: only chat models belong in a chat.
    const chat = data.filter((m) => !m.capabilities || m.capabilities.includes("chat"));
    const options = chat.map((m) => {
      const option = element("option", "", m.id);
      option.value = m.id;
      return option;
    });
    ui.model.replaceChildren(...options);
    if (!chat.length) throw new Error("This server serves no chat model (see /v1/models).");
    if (chat.some((m) => m.id === store.settings.model)) ui.model.value = store.settings.model;
    ui.model.disabled = false;
    setRunning(running);
    notice("");
  } catch (error) {
    notice(error.name === "TypeError" ? `Cannot reach the server (${error.message}).` : error.message);
  }
}

/** Server-sent events of `body`, parsed: the JSON of each `data:` field until `[DONE]`. */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.search(/\r?\n\r?\n/); end >= 0; end = buffer.search(/\r?\n\r?\n/)) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

function number(input) {
  const value = input.value.trim();
  return value === "" ? undefined : Number(value);
}

/** The request for the conversation so far (answers that ended empty are left out). */
function chatRequest(conversation) {
  const messages = [];
  if (conversation.system.trim()) messages.push({ role: "system", content: conversation.system });
  for (const m of conversation.messages) if (m.content) messages.push({ role: m.role, content: m.content });
  const request = {
    model: ui.model.value,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: number(ui.temperature),
    top_p: number(ui.topP),
    max_tokens: number(ui.maxTokens),
  };
  return JSON.stringify(request); // undefined settings are left out: the server's defaults apply
}

async function send() {
  const text = ui.prompt.value;
  if (!text.trim() || running || ui.model.disabled) return;
  notice("");
  const conversation = current();
  conversation.system = ui.system.value;
  const question = { role: "user", content: text };
  conversation.messages.push(question);
  conversation.title ||= text.trim().slice(0, 60);
  const body = chatRequest(conversation);
  const answer = { role: "assistant", content: "", model: ui.model.value, stats: {} };
  conversation.messages.push(answer);
  ui.prompt.value = "";
  showMessage(question);
  const view = showMessage(answer);
  view.article.classList.add("pending");
  ui.log.scrollTop = ui.log.scrollHeight;
  showHistory();

  const controller = new AbortController();
  setRunning({ controller });
  const started = performance.now();
  let first = null;
  let last = null;
  let failure = null;
  let drawn = false;
  const draw = () => {
    drawn = false;
    const atEnd = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
    update(view, answer);
    if (atEnd) ui.log.scrollTop = ui.log.scrollHeight;
  };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await explain(response));
    for await (const chunk of events(response.body)) {
      if (chunk.error) throw new Error(inWords(0, chunk.error));
      if (chunk.usage) answer.stats.usage = chunk.usage;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      const delta = choice.delta || {};
      if (delta.content || delta.reasoning_content) {
        last = performance.now();
        first ??= last;
        answer.content += delta.content || "";
        if (delta.reasoning_content) answer.reasoning = (answer.reasoning || "") + delta.reasoning_content;
        if (!drawn) {
          drawn = true;
          requestAnimationFrame(draw);
        }
      }
      if (choice.finish_reason) answer.stats.finish = choice.finish_reason;
    }
  } catch (error) {
    if (error.name === "AbortError") answer.stats.stopped = true;
    else failure = error.name === "TypeError" ? `Cannot reach the server (${error.message}).` : error.message;
  }
  if (first !== null) answer.stats.ttft = first - started;
  const tokens = answer.stats.usage && answer.stats.usage.completion_tokens;
  if (tokens > 1 && last > first) answer.stats.tokensPerSecond = (tokens - 1) / ((last - first) / 1000);
  if (failure) answer.stats.error = failure;
  view.article.classList.remove("pending");
  if (!answer.content && !answer.reasoning) {
    // Nothing came back: the exchange did not happen, and the question goes back to the input.
    conversation.messages.splice(-2, 2);
    view.article.remove();
    ui.log.lastElementChild?.remove();
    if (!ui.prompt.value) ui.prompt.value = text;
    if (!failure) failure = "Stopped before the first token.";
  }
  update(view, answer);
  if (failure) notice(failure);
  save();
  showHistory();
  setRunning(null);
}

function setRunning(value) {
  running = value;
  const stopHadFocus = document.activeElement === ui.stop;
  ui.stop.disabled = !running;
  ui.send.disabled = !!running || ui.model.disabled;
  ui.newChat.disabled = !!running;
  ui.deleteChat.disabled = !!running;
  ui.log.setAttribute("aria-busy", running ? "true" : "false");
  if (stopHadFocus && !running) ui.prompt.focus();
}

// ---------------------------------------------------------------- wiring

function saveSettings() {
  store.settings = {
    model: ui.model.value,
    temperature: ui.temperature.value,
    top_p: ui.topP.value,
    max_tokens: ui.maxTokens.value,
  };
  save();
}

function restoreSettings() {
  const s = store.settings;
  if (s.temperature !== undefined) ui.temperature.value = s.temperature;
  if (s.top_p !== undefined) ui.topP.value = s.top_p;
  if (s.max_tokens !== undefined) ui.maxTokens.value = s.max_tokens;
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  } else if (event.key === "Escape" && running) {
    running.controller.abort();
  }
});
ui.stop.addEventListener("click", () => running && running.controller.abort());
ui.newChat.addEventListener("click", startNewChat);
ui.deleteChat.addEventListener("click", deleteChat);
ui.setKey.addEventListener("click", () => {
  askKey("Enter the API key for this server.").then(loadModels, (error) => notice(error.message));
});
ui.system.addEventListener("change", () => {
  current().system = ui.system.value;
  save();
});
for (const input of [ui.model, ui.temperature, ui.topP, ui.maxTokens]) input.addEventListener("change", saveSettings);

const wide = window.matchMedia("(min-width: 52rem)").matches;
$("settings-panel").open = wide;
$("history-panel").open = wide;
restoreSettings();
showConversation();
setRunning(null);
loadModels();
