// A small Markdown renderer for model output. Everything is HTML-escaped FIRST; the renderer only
// ever adds its own tags around escaped text, so model output cannot inject markup or script.
// Covers headings, paragraphs, nested lists, block quotes, rules, fenced code, pipe tables, and
// inline code, bold, italic, strikethrough and http(s) links.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function renderMarkdown(source) {
  // NUL marks inline-code placeholders below, so it may not come from the input.
  const text = escapeHtml(String(source ?? "").replace(/\0/g, "").replace(/\r\n?/g, "\n"));
  return renderBlocks(text.split("\n"));
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const ITEM = /^(\s*)(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}&gt;\s?(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function renderBlocks(lines) {
  const out = [];
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) out.push(`<p>${inline(paragraph.join("\n").trim())}</p>`);
    paragraph = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const close = new RegExp(`^ {0,3}${m[1][0]}{${m[1].length},}\\s*$`);
      const body = [];
      for (i += 1; i < lines.length && !close.test(lines[i]); i += 1) body.push(lines[i]);
      i += 1;
      const lang = m[2] ? ` data-lang="${m[2]}"` : "";
      out.push(`<pre${lang}><code>${body.join("\n")}</code></pre>`);
    } else if (line.trim() === "") {
      flush();
      i += 1;
    } else if ((m = HEADING.exec(line))) {
      flush();
      out.push(`<h${m[1].length}>${inline(m[2])}</h${m[1].length}>`);
      i += 1;
    } else if (RULE.test(line)) {
      flush();
      out.push("<hr>");
      i += 1;
    } else if (QUOTE.test(line)) {
      flush();
      const quoted = [];
      for (; i < lines.length && (m = QUOTE.exec(lines[i])); i += 1) quoted.push(m[1]);
      out.push(`<blockquote>${renderBlocks(quoted)}</blockquote>`);
    } else if (ITEM.test(line)) {
      flush();
      i = renderList(lines, i, out);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      flush();
      i = renderTable(lines, i, out);
    } else {
      paragraph.push(line);
      i += 1;
    }
  }
  flush();
  return out.join("\n");
}

// Lists nest by indentation: an item indented two or more columns past its list's items opens a
// list inside the previous item. Non-item lines continue the current item.
function renderList(lines, start, out) {
  const stack = []; // { tag, indent }
  let i = start;
  let open = false; // an <li> is open at the top of the stack
  for (; i < lines.length; i += 1) {
    const line = lines[i];
    if (line.trim() === "") {
      const next = lines[i + 1];
      if (next !== undefined && ITEM.test(next) && stack.length) continue;
      break;
    }
    const m = ITEM.exec(line);
    if (!m) {
      if (FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)) break;
      out.push(` ${inline(line.trim())}`);
      continue;
    }
    const indent = m[1].replace(/\t/g, "    ").length;
    const tag = m[2] ? "ul" : "ol";
    while (stack.length && indent < stack[stack.length - 1].indent - 1) {
      out.push(`</li></${stack.pop().tag}>`);
    }
    const top = stack[stack.length - 1];
    if (!top || indent >= top.indent + 2) {
      const startAt = tag === "ol" && m[3] !== "1" ? ` start="${Number(m[3])}"` : "";
      out.push(`<${tag}${startAt}>`);
      stack.push({ tag, indent });
    } else if (top.tag !== tag) {
      out.push(`</li></${stack.pop().tag}><${tag}>`);
      stack.push({ tag, indent });
    } else if (open) {
      out.push("</li>");
    }
    out.push(`<li>${inline(m[4])}`);
    open = true;
  }
  while (stack.length) out.push(`</li></${stack.pop().tag}>`);
  return i;
}

function cells(row) {
  return row.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

function renderTable(lines, start, out) {
  const head = cells(lines[start]);
  const aligns = cells(lines[start + 1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : "",
  );
  const cell = (tag, text, k) => `<${tag}${aligns[k] ? ` class="align-${aligns[k]}"` : ""}>${inline(text)}</${tag}>`;
  const rows = [`<thead><tr>${head.map((h, k) => cell("th", h, k)).join("")}</tr></thead><tbody>`];
  let i = start + 2;
  for (; i < lines.length && lines[i].includes("|") && lines[i].trim() !== ""; i += 1) {
    const row = cells(lines[i]);
    rows.push(`<tr>${head.map((_, k) => cell("td", row[k] ?? "", k)).join("")}</tr>`);
  }
  out.push(`<div class="table-wrap"><table>${rows.join("")}</tbody></table></div>`);
  return i;
}

// `text` is already escaped. Code spans and links are set aside first (as NUL-delimited
// placeholders) so emphasis never applies inside code or an href.
function inline(text) {
  const stashed = [];
  const stash = (html) => `\0${stashed.push(html) - 1}\0`;
  const s = text
    .replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, __, code) => stash(`<code>${code.trim() || code}</code>`))
    .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()]+)\)/g, (_, label, href) =>
      stash(`<a href="${href}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`),
    );
  return emphasis(s).replace(/\0(\d+)\0/g, (_, k) => stashed[Number(k)]);
}

function emphasis(s) {
  return s
    .replace(/\*\*\*(?=\S)([\s\S]*?\S)\*\*\*/g, "<strong><em>$1</em></strong>")
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>")
    .replace(/\n/g, " ");
}
