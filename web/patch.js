// RFC 6902 JSON Patch, enough for ACTIVITY_DELTA: add, remove, replace, move, copy, test.
// Returns a new document; throws with the failing operation on any error.

export function applyPatch(document, operations) {
  let doc = structuredClone(document);
  for (const op of operations) {
    try {
      doc = applyOne(doc, op);
    } catch (e) {
      throw new Error(`patch ${JSON.stringify(op)} does not apply: ${e.message}`);
    }
  }
  return doc;
}

function pointer(path) {
  if (path === "") return [];
  if (typeof path !== "string" || !path.startsWith("/")) throw new Error(`bad path ${path}`);
  return path.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function get(doc, tokens) {
  let node = doc;
  for (const t of tokens) {
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, t)) {
      throw new Error(`no value at /${tokens.join("/")}`);
    }
    node = node[t];
  }
  return node;
}

function arrayIndex(arr, token, forInsert) {
  if (forInsert && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`bad array index ${token}`);
  const i = Number(token);
  if (i > arr.length || (!forInsert && i === arr.length)) throw new Error(`index ${i} out of range`);
  return i;
}

function add(doc, tokens, value) {
  if (tokens.length === 0) return value;
  const parent = get(doc, tokens.slice(0, -1));
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else if (parent !== null && typeof parent === "object") parent[last] = value;
  else throw new Error("parent is not a container");
  return doc;
}

function remove(doc, tokens) {
  if (tokens.length === 0) throw new Error("cannot remove the root");
  const parent = get(doc, tokens.slice(0, -1));
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false), 1);
  else if (parent !== null && typeof parent === "object" && Object.hasOwn(parent, last)) delete parent[last];
  else throw new Error(`no value at /${tokens.join("/")}`);
  return doc;
}

function applyOne(doc, op) {
  const path = pointer(op.path);
  switch (op.op) {
    case "add":
      return add(doc, path, structuredClone(op.value));
    case "remove":
      return remove(doc, path);
    case "replace":
      get(doc, path);
      return path.length === 0 ? structuredClone(op.value) : add(remove(doc, path), path, structuredClone(op.value));
    case "move": {
      const value = get(doc, pointer(op.from));
      return add(remove(doc, pointer(op.from)), path, value);
    }
    case "copy":
      return add(doc, path, structuredClone(get(doc, pointer(op.from))));
    case "test":
      if (JSON.stringify(get(doc, path)) !== JSON.stringify(op.value)) throw new Error("test failed");
      return doc;
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}
