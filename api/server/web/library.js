// The document library: list, upload with per-file progress and retry, scope, delete.

import { followJob, json, uploadFile } from "./api.js";
import * as viewer from "./viewer.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_COLLECTION = "default"; // where uploads go when no collection is named
const PHASES = { parse: "Parsing", chunk: "Chunking", embed: "Embedding" };
export const documents = new Map(); // id -> /documents entry
const selected = new Set(); // ids ticked to search; empty: all
let onAdded = () => {};

export async function refresh() {
  const list = await json("/documents");
  documents.clear();
  for (const doc of list) documents.set(doc.id, doc);
  for (const id of [...selected]) if (!documents.has(id)) selected.delete(id);
  renderList();
  await refreshCollections();
}

// What /ask should search: { collection?, document_ids? }.
export function scope() {
  const body = {};
  const collection = $("collection").value;
  if (collection) body.collection = collection;
  if (selected.size) body.document_ids = [...selected];
  return body;
}

async function refreshCollections() {
  const select = $("collection");
  const chosen = select.value;
  const names = (await json("/collections")).map((c) => c.name);
  select.replaceChildren(new Option("All collections", ""), ...names.map((n) => new Option(n, n)));
  select.value = names.includes(chosen) ? chosen : "";
  $("collection-names").replaceChildren(...names.map((n) => new Option(n)));
}

function renderList() {
  const items = [...documents.values()].sort((a, b) => b.id - a.id).map(docItem);
  $("doc-list").replaceChildren(...items);
  $("docs-empty").hidden = items.length > 0;
  describeScope();
}

function docItem(doc) {
  const li = document.createElement("li");
  li.className = "doc";
  li.dataset.documentId = doc.id;
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = selected.has(doc.id);
  box.setAttribute("aria-label", `Search only in ${doc.title}`);
  box.addEventListener("change", () => {
    box.checked ? selected.add(doc.id) : selected.delete(doc.id);
    describeScope();
  });
  const title = document.createElement("button");
  title.type = "button";
  title.className = "title";
  title.textContent = doc.title;
  title.title = `Open ${doc.source_name}`;
  title.addEventListener("click", () => viewer.open(doc, 1, null));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "icon delete";
  remove.textContent = "✕";
  remove.setAttribute("aria-label", `Delete ${doc.title}`);
  remove.addEventListener("click", () => confirmDelete(doc));
  const meta = document.createElement("div");
  meta.className = "meta";
  const status = document.createElement("span");
  status.className = `status-${doc.status}`;
  status.textContent = doc.status;
  const pages = doc.page_count ? `${doc.page_count} page${doc.page_count > 1 ? "s" : ""} · ` : "";
  meta.append(`${pages}${doc.num_chunks} chunk${doc.num_chunks === 1 ? "" : "s"} · `, status);
  if (doc.collection !== DEFAULT_COLLECTION) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = doc.collection;
    tag.title = "Collection";
    meta.append(" ", tag);
  }
  if (doc.error) meta.title = doc.error;
  li.append(box, title, remove, meta);
  return li;
}

function describeScope() {
  const names = [...selected].map((id) => documents.get(id)?.title).filter(Boolean);
  const collection = $("collection").value;
  $("scope").textContent = names.length
    ? `Searching ${names.join(", ")}`
    : collection ? `Searching collection ${collection}` : "Searching all documents";
}

export function confirm(title, text) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function confirmDelete(doc) {
  if (!(await confirm(`Delete “${doc.title}”?`, "It is removed from the library and every index. This cannot be undone."))) return;
  await json(`/documents/${doc.id}`, { method: "DELETE" });
  selected.delete(doc.id);
  viewer.forget(doc.id);
  await refresh();
}

// -- uploads ------------------------------------------------------------------------------

const STEPS = ["upload", "parse", "chunk", "embed"];
const STEP_NAMES = { upload: "Upload", parse: "Parse", chunk: "Chunk", embed: "Embed" };

function uploadRow(file) {
  const li = document.createElement("li");
  li.className = "upload";
  li.dataset.file = file.name;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = file.name;
  const phase = document.createElement("span");
  phase.className = "phase";
  phase.setAttribute("aria-live", "polite");
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${file.name}`);
  const steps = document.createElement("ol");
  steps.className = "steps";
  steps.setAttribute("aria-label", `Steps for ${file.name}`);
  const stepItems = {};
  for (const step of STEPS) {
    const item = document.createElement("li");
    item.dataset.step = step;
    item.dataset.state = "pending";
    item.textContent = STEP_NAMES[step];
    steps.append(item);
    stepItems[step] = item;
  }
  li.append(name, phase, bar, steps);
  $("uploads").append(li);
  return { li, phase, bar, stepItems };
}

// Show the steps in `reached` as done and `active` (if any) as running; the rest pending.
function markSteps(row, reached, active) {
  for (const step of STEPS) {
    const item = row.stepItems[step];
    item.dataset.state = step === active ? "active" : reached.includes(step) ? "done" : "pending";
  }
}

async function upload(file, row = uploadRow(file)) {
  const show = (text, value) => { row.phase.textContent = text; if (value !== null) row.bar.value = value; };
  row.li.classList.remove("failed", "ready");
  row.li.querySelectorAll(".error, button").forEach((e) => e.remove());
  try {
    show("Uploading", 0);
    markSteps(row, [], "upload");
    const job = await uploadFile(file, uploadCollection(), (f) => show(`Uploading ${Math.round(f * 100)}%`, f * 0.25));
    markSteps(row, ["upload"], null);
    show("Queued", 0.25);
    const done = await followJob(job, (p) => {
      const within = p.total ? p.done / p.total : 0;
      const step = { parse: 0, chunk: 1, embed: 2 }[p.phase] ?? 0;
      markSteps(row, ["upload", ...(p.phases || [])], p.phase);
      show(PHASES[p.phase] || "Queued", 0.25 + (step + within) * 0.25);
    });
    markSteps(row, ["upload", ...(done.phases || [])], null);
    const failure = fileFailure(done, file.name);
    if (failure) throw new Error(failure);
    show("Ready", 1);
    row.li.classList.add("ready");
    await refresh();
    for (const id of done.document_ids) onAdded(documents.get(id));
    setTimeout(() => row.li.remove(), 4000);
  } catch (error) {
    row.li.classList.add("failed");
    show("Failed", null);
    const message = document.createElement("span");
    message.className = "error";
    message.textContent = error.message;
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "secondary retry";
    retry.textContent = "Retry";
    retry.setAttribute("aria-label", `Retry ${file.name}`);
    retry.addEventListener("click", () => upload(file, row));
    row.li.append(message, retry);
    refresh();
  }
}

// Uploads go to the collection typed in the library ("" for the default one).
function uploadCollection() {
  return $("upload-collection").value.trim();
}

function fileFailure(job, name) {
  if (job.status === "failed") return job.error || "the ingestion failed";
  const report = job.report || {};
  const failure = (report.failures || []).find((f) => f.file === name) || (report.failures || [])[0];
  if (failure) return failure.error;
  if ((report.skipped_unsupported || []).length) return "this file type is not supported";
  if (!job.document_ids.length && !report.duplicates) return "no document was added";
  return null;
}

export function uploadAll(files) {
  return Promise.all([...files].map((file) => upload(file)));
}

export function install(added) {
  onAdded = added;
  const input = $("file-input");
  input.addEventListener("change", () => { uploadAll(input.files); input.value = ""; });
  const zone = $("dropzone");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadAll(e.dataTransfer.files);
  });
  $("collection").addEventListener("change", describeScope);
}
