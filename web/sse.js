// Reads a Server-Sent Events body with fetch's streaming reader (EventSource cannot POST).
// Yields the parsed JSON of each event's `data:`; comment lines (`: keep-alive`) and other fields
// are skipped, as the SSE spec says.

export class StreamFormatError extends Error {}

export async function* sseJson(body) {
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
        const event = parseFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event !== undefined) yield event;
      }
    }
    const rest = parseFrame((buffer + decoder.decode()).replace(/\r\n?/g, "\n"));
    if (rest !== undefined) yield rest;
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(frame) {
  const data = [];
  for (const line of frame.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== "data") continue;
    const value = colon < 0 ? "" : line.slice(colon + 1);
    data.push(value.startsWith(" ") ? value.slice(1) : value);
  }
  if (data.length === 0) return undefined;
  const text = data.join("\n");
  try {
    return JSON.parse(text);
  } catch {
    throw new StreamFormatError(`the server sent an event that is not JSON: ${text.slice(0, 120)}`);
  }
}
