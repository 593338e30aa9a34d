// The brainstorm room's activity: the phase under way, how many distinct ideas were offered and,
// once the votes are counted, the idea on top. Built with DOM nodes only: model text is never HTML.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The view of a `brainstorm` activity's content. */
export function renderBrainstorm(a) {
  const root = el("div", "room-view brainstorm-view");
  root.append(el("div", "brainstorm-phase", String(a.phase ?? a.status ?? "starting")));
  const ideas = Number(a.total_ideas) || 0;
  if (ideas) root.append(el("div", "brainstorm-count", `${ideas} distinct idea${ideas === 1 ? "" : "s"}`));
  if (a.top_idea) {
    const top = el("div", "brainstorm-top");
    top.append(el("span", "brainstorm-top-idea", String(a.top_idea)), el("span", "brainstorm-top-score", `${Number(a.top_score) || 0} points`));
    root.append(top);
  }
  return root;
}
