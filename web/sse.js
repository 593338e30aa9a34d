// Reads a Server-Sent Events body with fetch's streaming reader (EventSource cannot POST).
// Yields the parsed JSON of each event's `data:`; `onId` gets each event's `id:` (the run id and
// sequence number a stream resumes after); comment lines (`: keep-alive`) and other fields are
// skipped, as the SSE spec says.

export class StreamFormatError extends Error {}

export async function* sseJson(body, onId = () => {}) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // Normalise line endings; a trailing "\r" waits for the next chunk, it may start a "\r\n".
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n|\r(?!$)/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseFrame(buffer.slice(0, end), onId);
        buffer = buffer.slice(end + 2);
        if (event !== undefined) yield event;
      }
    }
    const rest = parseFrame((buffer + decoder.decode()).replace(/\r\n?/g, "\n"), onId);
    if (rest !== undefined) yield rest;
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(frame, onId) {
  const data = [];
  let id;
  for (const line of frame.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    if (field === "data") data.push(value);
  }
  if (data.length === 0) return undefined;
  if (id !== undefined) onId(id);
  const text = data.join("\n");
  try {
    return JSON.parse(text);
  } catch {
    throw new StreamFormatError(`the server sent an event that is not JSON: ${text.slice(0, 120)}`);
  }
}
