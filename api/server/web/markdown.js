// Markdown to HTML, safely: everything is escaped first, so no HTML or script from the
// model or the documents can ever reach the page; only the markup made here is real.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// `citable`: the citation numbers that exist; [n] markers for them become buttons.
export function renderMarkdown(source, citable = new Set()) {
  const blocks = escapeHtml(source).split(/\n?```/);
  return blocks
    .map((block, i) => (i % 2 ? codeBlock(block) : paragraphs(block, citable)))
    .join("");
}

function codeBlock(block) {
  const body = block.replace(/^[\w+-]*\n/, "");
  return `<pre><code>${body}</code></pre>`;
}

function paragraphs(text, citable) {
  const out = [];
  let list = null;
  const close = () => { if (list) { out.push(`</${list}>`); list = null; } };
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (bullet || numbered) {
      const kind = bullet ? "ul" : "ol";
      if (list !== kind) { close(); out.push(`<${kind}>`); list = kind; }
      out.push(`<li>${inline((bullet || numbered)[1], citable)}</li>`);
    } else if (heading) {
      close();
      out.push(`<h4>${inline(heading[2], citable)}</h4>`);
    } else if (line.trim()) {
      close();
      out.push(`<p>${inline(line, citable)}</p>`);
    } else {
      close();
    }
  }
  close();
  return out.join("");
}

function inline(text, citable) {
  return text
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[(\d{1,2})\]/g, (whole, n) =>
      citable.has(Number(n))
        ? `<button type="button" class="cite" data-n="${n}" aria-label="Source ${n}">${n}</button>`
        : whole);
}
