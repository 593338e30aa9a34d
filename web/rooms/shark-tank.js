// The shark tank's activity: each shark's excitement and, once decided, its deal, then the
// verdict. Built with DOM nodes only: model text is never HTML.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The view of a `shark_tank` activity's content. */
export function renderSharkTank(a) {
  const root = el("div", "room-view shark-tank-view");
  root.append(el("div", "shark-tank-status", String(a.status ?? "starting")));
  const rows = el("table", "shark-tank-sharks");
  for (const shark of a.sharks ?? []) {
    const analysis = (a.analyses ?? []).find((x) => x.shark === shark.name);
    const deal = (a.deals ?? []).find((x) => x.shark === shark.name);
    const row = el("tr");
    row.append(el("th", "", String(shark.name)));
    row.append(el("td", "excitement", analysis ? `${analysis.excitement}/10` : "…"));
    const offer = deal ? (deal.invest ? `in${deal.amount ? ` $${deal.amount}` : ""}${deal.equity ? ` for ${deal.equity}%` : ""}` : "out") : "…";
    row.append(el("td", deal?.invest ? "deal in" : "deal", offer));
    rows.append(row);
  }
  root.append(rows);
  if (a.funded !== undefined) root.append(el("div", "shark-tank-verdict", a.funded ? "Funded" : "No deal"));
  return root;
}
