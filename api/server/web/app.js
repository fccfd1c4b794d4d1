// The page: wires the library, the chat, the viewer and the conversation list together.

import { json } from "./api.js";
import * as chat from "./chat.js";
import * as library from "./library.js";
import * as viewer from "./viewer.js";

const $ = (id) => document.getElementById(id);

async function refreshChats() {
  const conversations = await json("/conversations");
  const items = conversations.map((c) => {
    const li = document.createElement("li");
    li.className = "chat-item";
    li.dataset.conversationId = c.id;
    li.classList.toggle("active", c.id === chat.chat.id);
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = c.title;
    open.title = c.title;
    if (c.id === chat.chat.id) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => openChat(c.id));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon delete";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", `Delete chat ${c.title}`);
    remove.addEventListener("click", () => deleteChat(c));
    li.append(open, remove);
    return li;
  });
  $("chat-list").replaceChildren(...items);
  $("chats-empty").hidden = items.length > 0;
}

async function openChat(id) {
  chat.show(await json(`/conversations/${id}`));
  localStorage.setItem("pagedrag.chat", id);
  await refreshChats();
}

function newChat() {
  chat.show(null);
  localStorage.removeItem("pagedrag.chat");
  refreshChats();
  $("question").focus();
}

async function deleteChat(c) {
  if (!(await library.confirm(`Delete chat “${c.title}”?`, "Its messages are removed for good."))) return;
  await json(`/conversations/${c.id}`, { method: "DELETE" });
  if (chat.chat.id === c.id) newChat();
  else refreshChats();
}

// Starter questions for a document just added, shown in the empty chat.
async function suggest(doc) {
  if (!doc || doc.status !== "ready") return;
  const { questions } = await json(`/documents/${doc.id}/suggestions`).catch(() => ({ questions: [] }));
  const box = $("suggestions");
  const from = document.createElement("div");
  from.className = "from";
  from.textContent = `Try asking about ${doc.title}:`;
  const buttons = questions.map((q) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "suggestion";
    button.textContent = q;
    button.addEventListener("click", () => send(q));
    return button;
  });
  box.replaceChildren(from, ...buttons); // shown in the empty chat (New chat)
}

function send(text) {
  const box = $("question");
  const question = (text ?? box.value).trim();
  if (!question || document.body.classList.contains("answering")) return;
  box.value = "";
  grow();
  chat.ask(question);
}

function grow() {
  const box = $("question");
  box.style.height = "auto";
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

// On a phone the library and chats are a drawer over the chat, opened by the ☰ button.
function showSide(shown, refocus = false) {
  document.body.classList.toggle("show-side", shown);
  $("menu").setAttribute("aria-expanded", String(shown));
  if (shown) $("new-chat").focus();
  else if (refocus) $("menu").focus();
}

async function start() {
  viewer.install();
  library.install(suggest);
  chat.install(async (saved) => {
    localStorage.setItem("pagedrag.chat", saved.id);
    await refreshChats();
  });
  $("new-chat").addEventListener("click", newChat);
  $("menu").addEventListener("click", () => showSide(!document.body.classList.contains("show-side")));
  $("scrim").addEventListener("click", () => showSide(false));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && document.body.classList.contains("show-side")) showSide(false, true);
  });
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("question").addEventListener("input", grow);
  json("/health").then((h) => ($("model-name").textContent = h.model)).catch(() => {});
  await library.refresh();
  const last = Number(localStorage.getItem("pagedrag.chat"));
  if (last) await openChat(last).catch(() => newChat());
  else await refreshChats();
  document.body.dataset.ready = "true";
}

start();
