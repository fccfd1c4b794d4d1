// The document viewer: the real PDF page (pdf.js) or the document's text, with the cited
// passage highlighted; when the passage cannot be found, the page plus the passage text.

import { json } from "./api.js";

const $ = (id) => document.getElementById(id);
let pdfjs = null; // the pdf.js module, loaded on first use
const pdfs = new Map(); // document id -> loading task promise
let current = null; // { doc, page, pageCount, passage }

async function loadPdfjs() {
  if (!pdfjs) {
    pdfjs = await import("/vendor/pdfjs/build/pdf.min.mjs");
    pdfjs.GlobalWorkerOptions.workerSrc = "/vendor/pdfjs/build/pdf.worker.min.mjs";
  }
  return pdfjs;
}

export function forget(documentId) {
  pdfs.delete(documentId);
  if (current && current.doc.id === documentId) clear();
}

export function clear() {
  current = null;
  $("viewer-title").textContent = "Viewer";
  $("viewer-page").textContent = "";
  $("viewer-note").hidden = true;
  $("viewer-body").replaceChildren(emptyNote("Click a citation to open the passage in its document."));
  navButtons();
}

// Show `doc` (a /documents entry) at `page` (1-based or null), highlighting `passage`.
export async function open(doc, page, passage) {
  current = { doc, page: page || 1, pageCount: doc.page_count || 1, passage };
  $("viewer-title").textContent = doc.title;
  $("viewer").dataset.documentId = doc.id;
  await render();
  if (window.matchMedia("(max-width: 1100px)").matches) $("viewer").scrollIntoView({ behavior: "smooth" });
}

async function render() {
  const shown = current; // the document may be closed or replaced while a page loads
  if (!shown) return;
  const { doc } = shown;
  $("viewer-note").hidden = true;
  navButtons();
  const isPdf = doc.mime_type === "application/pdf" && doc.file_url;
  $("viewer-page").textContent = isPdf || doc.page_count > 1
    ? `Page ${current.page} of ${current.pageCount}` : doc.source_name || "";
  $("viewer").dataset.page = current.page;
  try {
    const located = isPdf ? await renderPdfPage() : await renderText();
    if (current !== shown) return;
    if (shown.passage && !located) showPassage("The passage could not be located exactly here; this is the cited text:");
    $("viewer").dataset.located = located ? "yes" : "no";
  } catch (error) {
    if (current !== shown) return; // closed meanwhile (its document deleted): nothing to report
    $("viewer-body").replaceChildren(emptyNote(`Could not show this document: ${error.message}`));
    if (shown.passage) showPassage("The cited passage:");
  }
}

async function renderPdfPage() {
  const lib = await loadPdfjs();
  const { doc } = current;
  if (!pdfs.has(doc.id)) pdfs.set(doc.id, lib.getDocument(doc.file_url).promise);
  const pdf = await pdfs.get(doc.id);
  current.pageCount = pdf.numPages;
  navButtons();
  const page = await pdf.getPage(Math.min(current.page, pdf.numPages));
  const body = $("viewer-body");
  const width = Math.max(280, body.clientWidth - 36);
  const viewport = page.getViewport({ scale: width / page.getViewport({ scale: 1 }).width });
  const ratio = window.devicePixelRatio || 1;
  const holder = document.createElement("div");
  holder.className = "pdf-page";
  holder.style.width = `${viewport.width}px`;
  holder.style.height = `${viewport.height}px`;
  holder.style.setProperty("--scale-factor", viewport.scale);
  holder.style.setProperty("--total-scale-factor", viewport.scale);
  const canvas = document.createElement("canvas");
  canvas.width = Math.floor(viewport.width * ratio);
  canvas.height = Math.floor(viewport.height * ratio);
  canvas.style.width = `${viewport.width}px`;
  canvas.style.height = `${viewport.height}px`;
  canvas.setAttribute("aria-label", `Page ${current.page} of ${doc.title}`);
  canvas.setAttribute("role", "img");
  const layer = document.createElement("div");
  layer.className = "textLayer";
  holder.append(canvas, layer);
  body.replaceChildren(holder);
  const transform = ratio === 1 ? null : [ratio, 0, 0, ratio, 0, 0];
  await page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport, transform }).promise;
  const textLayer = new lib.TextLayer({ textContentSource: await page.getTextContent(), container: layer, viewport });
  await textLayer.render();
  holder.dataset.rendered = "true";
  const spans = [...layer.querySelectorAll("span")].filter((s) => !s.querySelector("span"));
  return current.passage ? highlightSpans(spans, current.passage) : true;
}

// Any other document (HTML, Markdown, text, DOCX, text given over the API) is shown as
// the text the indexer extracted from it: the very text its passages were cut from.
async function renderText() {
  const { doc } = current;
  const { text } = await json(`/documents/${doc.id}/text`);
  const article = document.createElement("article");
  article.className = "text-doc";
  $("viewer-body").replaceChildren(article);
  if (!text) {
    article.textContent = current.passage || "This document has no viewable text.";
    return Boolean(current.passage);
  }
  const range = current.passage ? locate(text, current.passage) : null;
  if (!range) { article.textContent = text; return !current.passage; }
  const mark = document.createElement("mark");
  mark.textContent = text.slice(range[0], range[1]);
  article.append(text.slice(0, range[0]), mark, text.slice(range[1]));
  mark.scrollIntoView({ block: "center" });
  return true;
}

function highlightSpans(spans, passage) {
  const starts = [];
  let joined = "";
  for (const span of spans) { starts.push(joined.length); joined += span.textContent + " "; }
  const range = locate(joined, passage);
  if (!range) return false;
  spans.forEach((span, i) => {
    const end = starts[i] + span.textContent.length;
    if (end > range[0] && starts[i] < range[1]) span.classList.add("hl");
  });
  const first = spans.find((s) => s.classList.contains("hl"));
  if (first) first.scrollIntoView({ block: "center" });
  return Boolean(first);
}

// [start, end) of the passage in `text`, tolerant of whitespace and punctuation; or null.
export function locate(text, passage) {
  const words = passage.match(/[\p{L}\p{N}]+/gu) || [];
  if (!words.length) return null;
  const pattern = (part) => new RegExp(part.map(escapeRegex).join("[^\\p{L}\\p{N}]+"), "iu");
  for (const size of [12, 6, 3]) {
    if (words.length < size && size !== 3) continue;
    const head = pattern(words.slice(0, size)).exec(text);
    if (!head) continue;
    const tail = pattern(words.slice(-Math.min(size, words.length)));
    const rest = tail.exec(text.slice(head.index));
    const end = rest ? head.index + rest.index + rest[0].length : head.index + passage.length;
    return [head.index, Math.min(text.length, Math.max(end, head.index + head[0].length))];
  }
  return null;
}

function escapeRegex(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

function showPassage(label) {
  const note = $("viewer-note");
  const quote = document.createElement("blockquote");
  quote.textContent = current.passage;
  note.replaceChildren(label, quote);
  note.hidden = false;
}

function emptyNote(text) {
  const p = document.createElement("p");
  p.className = "empty center";
  p.textContent = text;
  return p;
}

function navButtons() {
  const paged = current && current.pageCount > 1;
  $("prev-page").disabled = !paged || current.page <= 1;
  $("next-page").disabled = !paged || current.page >= current.pageCount;
}

export function install() {
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => current && render(), 150); // refit the page to the new width
  });
  const turn = (step) => { current.page += step; current.passage = null; render(); };
  $("prev-page").addEventListener("click", () => turn(-1));
  $("next-page").addEventListener("click", () => turn(1));
}
