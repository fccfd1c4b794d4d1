// Calls to the PagedRAG HTTP API; every error becomes an Error with the server's message.

// A server started with API keys answers 401 until the page has signed in: ask for a key
// once, trade it for the session cookie, and send the request again.
async function signedIn(send) {
  const response = await send();
  if (response.status !== 401) return response;
  const key = window.prompt("This PagedRAG server needs an API key:");
  if (!key) return response;
  const session = await fetch("/auth/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key }),
  });
  if (!session.ok) return session;
  return send();
}

export async function json(path, options = {}) {
  const headers = options.body ? { "Content-Type": "application/json" } : {};
  const response = await signedIn(() =>
    fetch(path, { ...options, headers: { ...headers, ...options.headers } }),
  );
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(messageOf(body) || `${response.status} ${response.statusText}`);
  return body;
}

export function messageOf(body) {
  const error = body && body.error;
  return typeof error === "string" ? error : error && error.message;
}

// POST a body and call onEvent(name, data) for each server-sent event until the stream ends.
export async function streamEvents(path, body, onEvent, signal) {
  const response = await signedIn(() =>
    fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    }),
  );
  if (!response.ok) {
    const error = await response.json().catch(() => null);
    throw new Error(messageOf(error) || `${response.status} ${response.statusText}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
    }
  }
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}

// Upload one file with XHR (fetch cannot report upload progress); resolves with the job.
export function uploadFile(file, collection, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("files", file, file.name);
    if (collection) form.append("collection", collection);
    const request = new XMLHttpRequest();
    request.open("POST", "/ingest?background=true"); // a job even when small: its progress shows
    request.responseType = "json";
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    request.onload = () => {
      if (request.status < 300) resolve(request.response);
      else reject(new Error(messageOf(request.response) || `upload failed (${request.status})`));
    };
    request.onerror = () => reject(new Error("the server could not be reached"));
    request.send(form);
  });
}

// Follow an ingestion job's progress stream; resolves with the finished job.
export function followJob(job, onProgress) {
  if (job.status === "done" || job.status === "failed") return Promise.resolve(job);
  return new Promise((resolve, reject) => {
    const events = new EventSource(`/ingest/${encodeURIComponent(job.job_id)}/events`);
    events.addEventListener("progress", (e) => onProgress(JSON.parse(e.data)));
    events.addEventListener("done", (e) => { events.close(); resolve(JSON.parse(e.data)); });
    events.onerror = () => { events.close(); reject(new Error("lost the progress stream")); };
  });
}
