// The chat: streamed answers with citations, sources, speed, copy and stop.

import { json, streamEvents } from "./api.js";
import * as library from "./library.js";
import { renderMarkdown } from "./markdown.js";
import * as viewer from "./viewer.js";

const $ = (id) => document.getElementById(id);
const HISTORY_TURNS = 6; // earlier messages sent with a question
export const chat = { id: null, messages: [] }; // the open conversation
let controller = null; // aborts the answer being streamed
let onSaved = () => {};
let welcome = null; // the empty chat's greeting and suggested questions

export function show(conversation) {
  chat.id = conversation ? conversation.id : null;
  chat.messages = conversation ? conversation.messages : [];
  $("chat-title").textContent = conversation ? conversation.title : "New chat";
  const box = $("messages");
  box.replaceChildren(...(chat.messages.length ? [] : [welcome]));
  for (const message of chat.messages) {
    if (message.role === "user") box.append(userBubble(message.content));
    else box.append(answerView(message).root);
  }
  box.scrollTop = box.scrollHeight;
}

function userBubble(text) {
  const root = document.createElement("div");
  root.className = "msg user";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text;
  root.append(bubble);
  return root;
}

// An answer's view; update(message) redraws it as more of the answer arrives.
function answerView(message) {
  const root = document.createElement("article");
  root.className = "msg assistant";
  root.setAttribute("aria-label", "Answer");
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const foot = document.createElement("div");
  foot.className = "msg-foot";
  const sources = document.createElement("details");
  sources.className = "sources";
  root.append(bubble, sources, foot);
  const view = {
    root,
    update(m, streaming = false) {
      const citations = m.citations || [];
      const numbers = new Set(citations.map((c) => c.n));
      root.classList.toggle("not-found", m.found === false);
      bubble.classList.toggle("typing", streaming);
      root.setAttribute("aria-busy", String(streaming)); // read once, when complete
      bubble.innerHTML = renderMarkdown(withSourceMarkers(m.content, m.attributions), numbers); // escaped by renderMarkdown
      if (m.found === false) bubble.prepend(notFoundLabel());
      bubble.querySelectorAll(".cite").forEach((b) => {
        b.addEventListener("click", () => openCitation(citations.find((c) => c.n === Number(b.dataset.n))));
      });
      renderSources(sources, citations);
      renderFoot(foot, m, streaming);
    },
  };
  view.update(message);
  return view;
}

// The answer with a [n] after each sentence the model left uncited but one passage supports
// (the server's `attributions`), so every supported claim links to its source.
function withSourceMarkers(content, attributions = []) {
  let text = content;
  for (const a of [...attributions].sort((x, y) => y.end - x.end)) {
    if (a.end <= text.length) text = `${text.slice(0, a.end)} [${a.n}]${text.slice(a.end)}`;
  }
  return text;
}

function notFoundLabel() {
  const label = document.createElement("div");
  label.className = "not-found-label";
  label.textContent = "⚠ Not found in your documents";
  return label;
}

function renderSources(details, citations) {
  details.hidden = !citations.length;
  if (!citations.length) return;
  const open = details.open;
  const summary = document.createElement("summary");
  summary.textContent = `Sources (${citations.length})`;
  const list = document.createElement("ol");
  for (const c of citations) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "source";
    const n = document.createElement("span");
    n.className = "cite";
    n.textContent = c.n;
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = c.page ? `${c.title} · p. ${c.page}` : c.title;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${Number(c.score).toFixed(3)}`;
    const snippet = document.createElement("span");
    snippet.className = "snippet";
    snippet.textContent = c.text;
    button.append(n, where, score, snippet);
    button.addEventListener("click", () => openCitation(c));
    item.append(button);
    list.append(item);
  }
  details.replaceChildren(summary, list);
  details.open = open;
}

function renderFoot(foot, m, streaming) {
  foot.replaceChildren();
  if (m.error) {
    const error = document.createElement("span");
    error.className = "error";
    error.textContent = m.error;
    foot.append(error);
  }
  if (m.stopped) foot.append(stat("Stopped", ""));
  const usage = m.usage;
  const timings = m.timings;
  if (!streaming && usage && timings && timings.ttft_ms !== null && timings.ttft_ms !== undefined) {
    const decodeS = (timings.total_ms - timings.ttft_ms) / 1000;
    const rate = usage.completion_tokens > 1 && decodeS > 0 ? (usage.completion_tokens - 1) / decodeS : null;
    foot.append(
      stat("TTFT", `${Math.round(timings.ttft_ms)} ms`, "ttft"),
      stat("", rate ? `${rate.toFixed(1)} tok/s` : "— tok/s", "rate"),
      stat("cached", `${usage.cached_tokens}/${usage.prompt_tokens} prompt tokens`, "cached"),
    );
    if (usage.reused_passages) {
      const passages = usage.reused_passages === 1 ? "passage" : "passages";
      const reused = `${usage.reused_passages} ${passages} (${usage.passage_tokens} tokens)`;
      foot.append(stat("reused", reused, "passages"));
    }
  }
  if (!streaming && m.content) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy answer");
    copy.addEventListener("click", async () => {
      await navigator.clipboard.writeText(m.content).catch(() => {});
      copy.textContent = "Copied";
      setTimeout(() => (copy.textContent = "Copy"), 1500);
    });
    foot.append(copy);
  }
}

function stat(label, value, name = "") {
  const span = document.createElement("span");
  span.className = `stat ${name}`;
  const strong = document.createElement("b");
  strong.textContent = value;
  span.append(label ? `${label} ` : "", strong);
  return span;
}

async function openCitation(citation) {
  if (!citation) return;
  let doc = library.documents.get(citation.document_id);
  if (!doc) doc = await json(`/documents/${citation.document_id}`).catch(() => null);
  const fallback = { id: citation.document_id, title: citation.title, mime_type: "text/plain", file_url: null, page_count: null };
  await viewer.open(doc || fallback, citation.page, citation.text);
}

// -- asking -------------------------------------------------------------------------------

export async function ask(question) {
  if (controller || !question.trim()) return;
  welcome.remove();
  const history = chat.messages.slice(-HISTORY_TURNS).map(({ role, content }) => ({ role, content }));
  const box = $("messages");
  box.append(userBubble(question));
  const answer = { role: "assistant", content: "", citations: [] };
  const view = answerView(answer);
  view.update(answer, true);
  box.append(view.root);
  box.scrollTop = box.scrollHeight;
  controller = new AbortController();
  busy(true);
  const body = { question, history, stream: true, max_tokens: Number($("answer-length").value), ...library.scope() };
  try {
    await streamEvents("/ask", body, (name, data) => {
      if (name === "citations") answer.citations = data.citations;
      else if (name === "token") answer.content += data.delta;
      else if (name === "done") Object.assign(answer, { content: data.answer, citations: data.citations, attributions: data.attributions, found: data.found, usage: data.usage, timings: data.timings });
      else if (name === "error") answer.error = data.message;
      view.update(answer, name !== "done" && name !== "error");
      box.scrollTop = box.scrollHeight;
    }, controller.signal);
  } catch (error) {
    if (error.name === "AbortError") answer.stopped = true;
    else answer.error = error.message;
  } finally {
    controller = null;
    busy(false);
  }
  view.update(answer);
  try {
    await save(question, answer);
  } catch (error) {
    answer.error = `Not saved to the history: ${error.message}`;
    view.update(answer);
  }
}

async function save(question, answer) {
  const { role, content, ...details } = answer;
  if (chat.id === null) chat.id = (await json("/conversations", { method: "POST", body: "{}" })).id;
  const messages = [{ role: "user", content: question, details: {} }, { role, content, details }];
  const saved = await json(`/conversations/${chat.id}/messages`, { method: "POST", body: JSON.stringify({ messages }) });
  chat.messages = saved.messages;
  $("chat-title").textContent = saved.title;
  onSaved(saved);
}

export function stop() {
  if (controller) controller.abort();
}

function busy(on) {
  $("stop").hidden = !on;
  $("send").disabled = on;
  document.body.classList.toggle("answering", on);
}

export function install(saved) {
  onSaved = saved;
  welcome = $("welcome");
  $("stop").addEventListener("click", stop);
}
