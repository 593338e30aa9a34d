// The debate room's activity: the round under way, each round's scores side by side, the running
// totals and, at the end, the winner. Built with DOM nodes only: model text is never HTML.

const SIDES = ["pro", "con"];

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The view of a `debate` activity's content. */
export function renderDebate(a) {
  const root = el("div", "room-view debate-view");
  const round = Number(a.round) || 0;
  const total = Number(a.total_rounds) || 0;
  root.append(el("div", "debate-round", total ? `Round ${round} of ${total}` : "Starting"));
  const totals = el("div", "debate-totals");
  for (const side of SIDES) {
    const leading = a.winner === side;
    const box = el("div", `debate-side ${side}${leading ? " winner" : ""}`);
    box.append(el("span", "debate-side-name", side.toUpperCase()), el("span", "debate-score", String(a[`${side}_score`] ?? 0)));
    totals.append(box);
  }
  root.append(totals);
  const rows = el("table", "debate-rounds");
  for (const r of a.rounds ?? []) {
    const row = el("tr");
    row.append(el("th", "", `Round ${r.round}`));
    for (const side of SIDES) {
      const score = r[`${side}_score`];
      row.append(el("td", side, score === undefined ? "not scored" : `${score}/10`));
    }
    rows.append(row);
  }
  if (rows.childElementCount) root.append(rows);
  if (a.winner) {
    const verdict = a.winner === "tie" ? "A tie" : `${a.winner.toUpperCase()} wins`;
    root.append(el("div", "debate-verdict", verdict));
  }
  return root;
}
