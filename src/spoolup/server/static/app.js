// spoolup's page. Plain JavaScript, no build step, nothing fetched from outside.
//
// Layout of this file:
//   format helpers | plain-language errors | auth (token asked once, kept in
//   sessionStorage) | apiFetch | limits (GET /api/limits, checked before sending)
//   uploaders: one function per transport that uploads ONE file and reports progress
//              (formUpload: one multipart POST; tusUpload: resumable, /tus/ via tus.js);
//              pickUploader(file) chooses one by size (TUS_THRESHOLD)
//   upload queue (UI items, retry, clear finished, at most MAX_PARALLEL at once)
//   unfinished uploads (resume or forget) | stored files (search, sort, pages,
//   copy link / sha256 / curl, share links) | upload links | image check | start-up
//
// At /u/<link> (an upload link) the page is upload-only: every file goes to
// /u/<link>/files, no token is asked, nothing else is shown.
"use strict";

((global) => {
  const TOKEN_KEY = "spoolup.token";
  const MAX_PARALLEL = 3;
  // Files of this size or more go by tus (/tus/), resumable after a reload or a lost
  // connection; smaller ones go in one multipart POST (fewer round trips).
  const TUS_THRESHOLD = 8 * 1024 * 1024;
  const TUS_ENDPOINT = "/tus/";
  // Pauses before resuming a tus upload whose connection is lost (tus.js has already
  // retried each request a few times by then).
  const TUS_RESUME_DELAYS = [1000, 2000, 5000, 10000, 20000, 30000];
  // Room for the multipart framing around one file in a form upload.
  const FORM_OVERHEAD = 16 * 1024;
  const PAGE_SIZE = 50;
  const UPLOAD_LINK = global.location.pathname.match(/^\/u\/([^/]+)$/);
  const LINK_BASE = UPLOAD_LINK ? `/u/${UPLOAD_LINK[1]}` : null;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- format helpers

  // Decimal units, three significant digits, no trailing zeros: "5.1 MB", "3 MB"
  // (the same words as the CLI and the server's banner).
  function formatBytes(n) {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    if (i === 0) return `${Math.floor(n)} B`;
    const digits = n >= 100 ? 0 : n >= 10 ? 1 : 2;
    return `${String(Number(n.toFixed(digits)))} ${units[i]}`;
  }

  function formatDuration(seconds) {
    if (!Number.isFinite(seconds)) return "–";
    if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function formatDate(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  }

  // ---------------------------------------------------------------- plain-language errors

  // The server's {"error": "..."} as a sentence (capitalised), or "".
  function serverMessage(body) {
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.error === "string" && parsed.error) {
        return parsed.error[0].toUpperCase() + parsed.error.slice(1);
      }
    } catch (_) {
      // not JSON
    }
    return "";
  }

  // What went wrong with `file`, in words a person acts on (never a limit's code name).
  function plainError(file, status, body) {
    const said = serverMessage(body);
    if (status === 0) return "The connection to the server was lost. Retry when it is back.";
    if (status === 413) {
      const most = limits.largestFor(file);
      if (most !== null && file && file.size > most) return tooBig(file, most);
      return file ? `${file.name} is more than this server takes in one upload.` : "That is more than this server takes.";
    }
    if (status === 401 || status === 403) return said || "The token was refused.";
    if (status === 410) return said || "This link has expired.";
    if (status === 507) return "The server's storage is full. Nothing was stored.";
    if (status >= 500) return "The server could not store the file. Try again later.";
    return said || `The server refused it (${status}).`;
  }

  function tooBig(file, most) {
    return `${file.name} is ${formatBytes(file.size)}; this server takes files up to ${formatBytes(most)}.`;
  }

  async function responseError(response, file) {
    return plainError(file, response.status, await response.text());
  }

  // ---------------------------------------------------------------- auth

  const auth = {
    pending: null,

    get token() {
      return LINK_BASE ? null : sessionStorage.getItem(TOKEN_KEY);
    },

    headers() {
      const token = this.token;
      return token ? { Authorization: `Bearer ${token}` } : {};
    },

    // Shows the token dialog once; every caller that got a 401 meanwhile waits for it.
    ask() {
      if (this.pending) return this.pending;
      const refused = this.token !== null;
      this.pending = new Promise((resolve) => {
        const dialog = $("token-dialog");
        const input = $("token-input");
        $("token-error").hidden = !refused;
        input.value = "";
        const onClose = () => {
          dialog.removeEventListener("close", onClose);
          const value = input.value.trim();
          if (value) sessionStorage.setItem(TOKEN_KEY, value);
          this.pending = null;
          resolve();
        };
        dialog.addEventListener("close", onClose);
        dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
        dialog.showModal();
        input.focus();
      });
      return this.pending;
    },
  };

  // fetch() with the token; on a 401 asks for a token and tries again.
  async function apiFetch(path, options = {}) {
    for (;;) {
      const headers = { ...(options.headers || {}), ...auth.headers() };
      const response = await fetch(path, { ...options, headers });
      if (response.status !== 401 || LINK_BASE) return response;
      await auth.ask();
    }
  }

  // ---------------------------------------------------------------- limits

  const limits = {
    info: null,

    async load() {
      const response = LINK_BASE ? await fetch(`${LINK_BASE}/limits`) : await apiFetch("/api/limits");
      if (!response.ok) throw new Error(await responseError(response, null));
      this.info = await response.json();
      return this.info;
    },

    // The largest file this server takes the way `file` would travel (null: unknown).
    largestFor(file) {
      if (!this.info) return null;
      let most = this.info.max_file_size;
      if (file && pickUploader(file) === formUpload && this.info.max_body_size !== undefined) {
        most = Math.min(most, this.info.max_body_size - FORM_OVERHEAD);
      }
      return most;
    },

    // Why the server would refuse `file`, before a byte is sent; null when it would not.
    refusal(file) {
      const most = this.largestFor(file);
      return most !== null && file.size > most ? tooBig(file, most) : null;
    },
  };

  function showLimits(info) {
    const line = $("limits-line");
    if (LINK_BASE) {
      const until = formatDate(info.expires);
      line.textContent = info.files_left > 0
        ? `You can send ${info.files_left} more file${info.files_left === 1 ? "" : "s"}, up to ${formatBytes(info.max_file_size)} each, until ${until}.`
        : "This link has taken all the files it allows.";
      return;
    }
    line.textContent = `Files up to ${formatBytes(info.max_file_size)} each. Large files resume after a reload or a lost connection.`;
    $("inspect-limit").textContent = `Images up to ${formatBytes(info.inspect_max_size)}. Is it all white? Checked in memory, never stored.`;
    $("request-card").hidden = !info.links;
    if (!$("request-size").value) {
      $("request-size").value = String(Math.round(Math.min(info.max_file_size, 1e12) / 1e6));
    }
  }

  // ---------------------------------------------------------------- uploaders

  class Cancelled extends Error {}

  // Uploads one file as multipart/form-data to POST /api/files (or an upload link).
  //   onProgress(sentBytes, totalBytes) is called as bytes leave the browser.
  //   Returns { promise, cancel }: promise resolves to the server's record for the file
  //   and rejects with Cancelled or an Error whose message is a plain sentence.
  function formUpload(file, onProgress) {
    let xhr = null;
    let cancelled = false;
    const target = LINK_BASE ? `${LINK_BASE}/files` : "/api/files";

    const attempt = () => new Promise((resolve, reject) => {
      xhr = new XMLHttpRequest();
      xhr.open("POST", target);
      for (const [name, value] of Object.entries(auth.headers())) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        // The multipart body is a little larger than the file: report file bytes.
        if (event.lengthComputable && event.total > 0) {
          onProgress(Math.min(file.size, (event.loaded / event.total) * file.size), file.size);
        }
      };
      xhr.onload = () => resolve({ status: xhr.status, body: xhr.responseText });
      xhr.onerror = () => resolve({ status: 0, body: "" });
      xhr.onabort = () => reject(new Cancelled("Cancelled"));
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });

    const run = async () => {
      for (let tries = 0; ; tries += 1) {
        const { status, body } = await attempt();
        if (status === 201) {
          onProgress(file.size, file.size);
          return JSON.parse(body)[0];
        }
        // A 401 (or a connection closed on us before we read it): get a token, retry once.
        const authProblem = !LINK_BASE &&
          (status === 401 || (status === 0 && tries === 0 && (await needsToken())));
        if (authProblem && tries < 2 && !cancelled) {
          await auth.ask();
          onProgress(0, file.size);
          continue;
        }
        throw new Error(plainError(file, status, body));
      }
    };

    return {
      promise: run(),
      cancel() {
        cancelled = true;
        if (xhr) xhr.abort();
      },
    };
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Uploads one file with tus (static/tus.js) to /tus/: same signature as formUpload,
  // plus hooks: resumed(offset) when the server already had the first bytes (a reload,
  // an earlier attempt), retrying(seconds) while waiting out a lost connection.
  // The promise resolves to the file record the finished upload became.
  function tusUpload(file, onProgress, hooks = {}) {
    const key = global.SpoolupTus.storageKey(TUS_ENDPOINT, file);
    let handle = null;
    let cancelled = false;

    const attempt = () => new Promise((resolve, reject) => {
      let first = true;
      handle = global.SpoolupTus.upload(file, {
        endpoint: TUS_ENDPOINT,
        token: auth.token,
        onProgress(sent, total) {
          if (first) {
            first = false;
            if (sent > 0 && hooks.resumed) hooks.resumed(sent);
          }
          onProgress(sent, total);
        },
        onSuccess: resolve,
        onError: reject,
      });
    });

    const run = async () => {
      let lost = 0;
      let asked = 0;
      for (;;) {
        if (cancelled) throw new Cancelled("Cancelled");
        try {
          const { url, fileId } = await attempt();
          onProgress(file.size, file.size);
          return await tusRecord(url, fileId);
        } catch (error) {
          if (cancelled) throw new Cancelled("Cancelled");
          if (error.status === 401 && asked < 2) {
            asked += 1;
            await auth.ask();
            continue;
          }
          if (error.status === 0 && lost < TUS_RESUME_DELAYS.length) {
            const delay = TUS_RESUME_DELAYS[lost];
            lost += 1;
            if (hooks.retrying) hooks.retrying(delay / 1000);
            await sleep(delay);
            continue;
          }
          throw new Error(plainError(file, error.status, JSON.stringify({ error: error.message })));
        }
      }
    };

    return {
      key,
      promise: run(),
      cancel() {
        cancelled = true;
        // Cancelled means not wanted: end the upload on the server too (termination),
        // once the aborted request has ended.
        const url = localStorage.getItem(key);
        localStorage.removeItem(key);
        if (handle) handle.abort();
        if (url) terminate(url, handle ? handle.done : Promise.resolve());
      },
    };
  }

  // Ends an upload on the server. The server refuses a DELETE (423) while the aborted
  // PATCH is still ending there, which the browser would log as an error: so first wait
  // until the aborted request settled and the server's offset stopped moving.
  async function terminate(url, settled) {
    try {
      await settled;
    } catch (_) {
      // aborted: expected
    }
    const tus = { "Tus-Resumable": "1.0.0", ...auth.headers() };
    let last = null;
    for (let tries = 0; tries < 40; tries += 1) {
      try {
        const head = await fetch(url, { method: "HEAD", headers: tus });
        if (!head.ok) return; // gone already
        const offset = head.headers.get("Upload-Offset");
        if (offset === last) {
          const response = await fetch(url, { method: "DELETE", headers: tus });
          if (response.status !== 423) return;
        }
        last = offset;
      } catch (_) {
        return; // the server is unreachable: it expires the upload by itself
      }
      await sleep(300);
    }
  }

  // The record a finished tus upload became: the server names it in the
  // Spoolup-File-Record header (base64 JSON) of a HEAD on the upload. Without one, the
  // server's completion failed midway: an empty PATCH at the end runs it again.
  async function tusRecord(url, fileId) {
    const tus = { "Tus-Resumable": "1.0.0" };
    let response = await apiFetch(url, { method: "HEAD", headers: tus });
    let header = response.headers.get("Spoolup-File-Record");
    const end = response.headers.get("Upload-Length");
    if (response.ok && !header && end !== null && response.headers.get("Upload-Offset") === end) {
      response = await apiFetch(url, {
        method: "PATCH",
        headers: { ...tus, "Upload-Offset": end, "Content-Type": "application/offset+octet-stream" },
      });
      header = response.headers.get("Spoolup-File-Record");
    }
    if (!response.ok || !header) {
      throw new Error(`The upload finished, but the server did not say what it stored (${response.status}).`);
    }
    const bytes = Uint8Array.from(atob(header), (c) => c.charCodeAt(0));
    const record = JSON.parse(new TextDecoder().decode(bytes));
    if (fileId && record.id !== fileId) throw new Error("The server named two different files.");
    return record;
  }

  async function needsToken() {
    try {
      const response = await fetch("/api/files?limit=1", { headers: auth.headers() });
      return response.status === 401;
    } catch (_) {
      return false;
    }
  }

  // The one place that decides how a file travels: large files by tus (resumable).
  // Upload links take only form uploads (tus needs the token).
  function pickUploader(file) {
    if (LINK_BASE) return formUpload;
    return file.size >= TUS_THRESHOLD && global.SpoolupTus ? tusUpload : formUpload;
  }

  // ---------------------------------------------------------------- upload queue

  const waiting = [];
  let active = 0;
  const FINISHED = new Set(["done", "failed", "cancelled"]);

  class QueueItem {
    constructor(file) {
      this.file = file;
      this.handle = null;
      this.samples = [];
      const node = $("queue-item").content.firstElementChild.cloneNode(true);
      this.node = node;
      this.bar = node.querySelector(".bar");
      this.fill = node.querySelector(".bar span");
      this.stats = node.querySelector(".item-stats");
      this.cancelButton = node.querySelector(".cancel");
      this.retryButton = node.querySelector(".retry");
      node.querySelector(".item-name").textContent = file.name;
      node.querySelector(".item-name").title = file.name;
      node.dataset.filename = file.name;
      this.cancelButton.addEventListener("click", () => this.cancel());
      this.retryButton.addEventListener("click", () => this.retry());
      node.item = this;
      $("queue").prepend(node);
      const refused = limits.refusal(file);
      if (refused) {
        // Refused before a byte is sent: the server would say no.
        this.setState("failed", refused);
        this.retryButton.hidden = true;
      } else {
        this.setState("waiting", `Waiting · ${formatBytes(file.size)}`);
        waiting.push(this);
      }
      showQueueHead();
    }

    setState(state, text) {
      this.node.className = `item ${state}`;
      this.node.dataset.state = state;
      this.stats.textContent = text;
      const finished = FINISHED.has(state);
      this.cancelButton.title = finished ? "Remove" : "Cancel";
      this.cancelButton.setAttribute("aria-label", `${this.cancelButton.title} ${this.file.name}`);
      this.retryButton.hidden = state !== "failed" && state !== "cancelled";
    }

    setPercent(percent) {
      const value = Math.max(0, Math.min(100, Math.floor(percent)));
      this.fill.style.width = `${percent}%`;
      this.bar.setAttribute("aria-valuenow", String(value));
    }

    // The server already had `offset` bytes: the speed counts from there.
    resumed(offset) {
      this.resumedFrom = offset;
      this.node.dataset.resumedFrom = String(offset);
      this.samples = [[performance.now() / 1000, offset]];
    }

    progress(sent, total) {
      const now = performance.now() / 1000;
      this.samples.push([now, sent]);
      while (this.samples.length > 2 && now - this.samples[0][0] > 3) this.samples.shift();
      const [t0, b0] = this.samples[0];
      const speed = now > t0 ? (sent - b0) / (now - t0) : NaN;
      const percent = total > 0 ? (sent / total) * 100 : 100;
      this.setPercent(percent);
      if (sent >= total) {
        this.setState("finishing", `${formatBytes(total)} sent · storing…`);
        return;
      }
      const left = speed > 0 ? (total - sent) / speed : NaN;
      const resumed = this.resumedFrom ? ` · resumed at ${formatBytes(this.resumedFrom)}` : "";
      this.setState(
        "uploading",
        `${formatBytes(sent)} of ${formatBytes(total)} · ${Math.floor(percent)} %` +
          ` · ${speed > 0 ? `${formatBytes(speed)}/s` : "–"} · ${formatDuration(left)} left${resumed}`,
      );
    }

    retrying(seconds) {
      this.samples = [];
      this.setState("uploading", `Connection lost · trying again in ${formatDuration(seconds)}`);
    }

    async start() {
      const started = performance.now();
      this.samples = [[started / 1000, 0]];
      this.resumedFrom = 0;
      this.setPercent(0);
      this.setState("uploading", `0 B of ${formatBytes(this.file.size)} · 0 %`);
      const upload = pickUploader(this.file);
      this.node.dataset.transport = upload === tusUpload ? "tus" : "form";
      this.handle = upload(this.file, (sent, total) => this.progress(sent, total), {
        resumed: (offset) => this.resumed(offset),
        retrying: (seconds) => this.retrying(seconds),
      });
      unfinished.show();
      try {
        const record = await this.handle.promise;
        const seconds = (performance.now() - started) / 1000;
        const resumed = this.resumedFrom ? ` · resumed at ${formatBytes(this.resumedFrom)}` : "";
        this.setPercent(100);
        this.setState(
          "done",
          `Stored · ${formatBytes(record.size)} in ${formatDuration(seconds)} · sha256 ${record.sha256.slice(0, 12)}…${resumed}`,
        );
        if (record.id) this.node.dataset.id = record.id;
        if (LINK_BASE) limits.load().then(showLimits, () => {});
        else files.refresh();
      } catch (error) {
        if (error instanceof Cancelled) this.setState("cancelled", "Cancelled");
        else this.setState("failed", error.message);
      }
      this.handle = null;
      unfinished.show();
    }

    // Sends the same file again (a tus upload continues where the server stopped).
    retry() {
      if (!FINISHED.has(this.node.dataset.state) || limits.refusal(this.file)) return;
      this.setState("waiting", `Waiting · ${formatBytes(this.file.size)}`);
      waiting.push(this);
      pump();
    }

    cancel() {
      const state = this.node.dataset.state;
      if (state === "waiting") {
        waiting.splice(waiting.indexOf(this), 1);
        this.setState("cancelled", "Cancelled");
      } else if (this.handle && (state === "uploading" || state === "finishing")) {
        this.handle.cancel();
      } else {
        this.node.remove();
        showQueueHead();
      }
    }
  }

  function showQueueHead() {
    $("queue-head").hidden = $("queue").children.length === 0;
  }

  function clearFinished() {
    for (const node of Array.from($("queue").children)) {
      if (FINISHED.has(node.dataset.state)) node.remove();
    }
    showQueueHead();
  }

  function enqueue(fileList) {
    for (const file of fileList) new QueueItem(file);
    pump();
  }

  function pump() {
    while (active < MAX_PARALLEL && waiting.length > 0) {
      const item = waiting.shift();
      active += 1;
      item.start().finally(() => {
        active -= 1;
        pump();
      });
    }
  }

  // A label with a file input that also takes files dropped on it.
  function dropTarget(zone, input, take) {
    input.addEventListener("change", () => {
      if (input.files.length) take(Array.from(input.files));
      input.value = "";
    });
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        event.preventDefault();
        zone.classList.add("over");
      });
    }
    for (const type of ["dragleave", "drop"]) {
      zone.addEventListener(type, () => zone.classList.remove("over"));
    }
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      const dropped = Array.from(event.dataTransfer.files || []);
      if (dropped.length) take(dropped);
    });
  }

  // ---------------------------------------------------------------- unfinished uploads

  // Unfinished tus uploads kept by tus.js in localStorage ("name:size:mtime" after the
  // endpoint), minus those the queue is sending now. Each can be forgotten: its key is
  // dropped and the upload ended on the server.
  const unfinished = {
    list() {
      const prefix = `spoolup-tus:${TUS_ENDPOINT}:`;
      const sending = new Set(
        Array.from($("queue").children)
          .map((node) => node.item)
          .filter((item) => item && item.handle && item.handle.key)
          .map((item) => item.handle.key),
      );
      const found = [];
      try {
        for (let i = 0; i < localStorage.length; i += 1) {
          const key = localStorage.key(i);
          if (!key || !key.startsWith(prefix) || sending.has(key)) continue;
          const parts = key.slice(prefix.length).split(":");
          if (parts.length < 3) continue;
          found.push({ key, name: parts.slice(0, -2).join(":"), size: Number(parts[parts.length - 2]) });
        }
      } catch (_) {
        // localStorage unavailable: nothing to resume
      }
      return found;
    },

    show() {
      if (LINK_BASE) return;
      const found = this.list();
      $("resume-hint").hidden = found.length === 0;
      $("resume-list").replaceChildren(...found.map((u) => {
        const li = document.createElement("li");
        li.dataset.filename = u.name;
        const name = document.createElement("span");
        name.className = "resume-name";
        name.textContent = `${u.name} (${formatBytes(u.size)})`;
        const forget = document.createElement("button");
        forget.type = "button";
        forget.className = "button ghost small forget";
        forget.textContent = "Forget";
        forget.setAttribute("aria-label", `Forget the unfinished upload of ${u.name}`);
        forget.addEventListener("click", () => {
          const url = localStorage.getItem(u.key);
          localStorage.removeItem(u.key);
          if (url) terminate(url, Promise.resolve());
          this.show();
        });
        li.append(name, forget);
        return li;
      }));
    },
  };

  // ---------------------------------------------------------------- copying

  let toastTimer = null;

  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  // Copies `text`; where the browser does not let the page do it (plain http beyond
  // localhost), shows it selected in a dialog instead.
  async function copyText(text, what) {
    try {
      await navigator.clipboard.writeText(text);
      toast(`Copied ${what}.`);
    } catch (_) {
      const area = $("copy-text");
      area.value = text;
      $("copy-dialog").showModal();
      area.select();
    }
  }

  function shellQuote(text) {
    return `'${text.replace(/'/g, "'\\''")}'`;
  }

  // ---------------------------------------------------------------- stored files

  const files = {
    loading: null,
    again: false,
    cursor: null,
    shown: 0,

    query() {
      const [sort, order] = $("files-sort").value.split(":");
      const params = new URLSearchParams({ sort, order, limit: String(PAGE_SIZE) });
      const search = $("files-search").value.trim();
      if (search) params.set("q", search);
      return params;
    },

    // One listing at a time; a refresh asked for meanwhile runs once after it.
    refresh() {
      if (this.loading) {
        this.again = true;
        return this.loading;
      }
      this.loading = this.load(null).finally(() => {
        this.loading = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
      return this.loading;
    },

    more() {
      if (this.loading || !this.cursor) return this.loading;
      this.loading = this.load(this.cursor).finally(() => { this.loading = null; });
      return this.loading;
    },

    async load(cursor) {
      const errorBox = $("files-error");
      const params = this.query();
      if (cursor) params.set("cursor", cursor);
      try {
        const response = await apiFetch(`/api/files?${params}`);
        if (!response.ok) throw new Error(await responseError(response, null));
        const records = await response.json();
        errorBox.hidden = true;
        this.cursor = response.headers.get("Spoolup-Next-Cursor");
        const rows = records.map((record) => this.row(record));
        if (cursor) $("file-rows").append(...rows);
        else $("file-rows").replaceChildren(...rows);
        this.shown = $("file-rows").children.length;
        this.totals(response.headers, params.get("q"));
      } catch (error) {
        errorBox.textContent = error.message;
        errorBox.hidden = false;
      }
    },

    totals(headers, search) {
      const total = Number(headers.get("Spoolup-Total-Count") || this.shown);
      const totalSize = Number(headers.get("Spoolup-Total-Size") || 0);
      const matched = Number(headers.get("Spoolup-Match-Count") || this.shown);
      const matchedSize = Number(headers.get("Spoolup-Match-Size") || 0);
      $("files-count").textContent = total ? String(total) : "";
      let text = `${total} file${total === 1 ? "" : "s"} · ${formatBytes(totalSize)} in all`;
      if (search) text = `${matched} of ${total} match “${search}” · ${formatBytes(matchedSize)}`;
      if (this.shown < matched) text += ` · showing ${this.shown}`;
      $("files-total").textContent = total ? text : "";
      $("files-empty").textContent = search ? `No file name contains “${search}”.` : "No files yet. Uploaded files appear here.";
      $("files-empty").hidden = this.shown > 0;
      $("file-table").hidden = this.shown === 0;
      $("files-more").hidden = !this.cursor;
    },

    row(record) {
      const tr = document.createElement("tr");
      tr.dataset.id = record.id;
      tr.dataset.filename = record.filename;
      const cell = (className, label, text, title) => {
        const td = document.createElement("td");
        td.className = className;
        td.dataset.label = label;
        if (text !== null) td.textContent = text;
        if (title) td.title = title;
        tr.append(td);
        return td;
      };
      const button = (className, text, label, onClick) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = `action ${className}`;
        b.textContent = text;
        b.setAttribute("aria-label", `${label} ${record.filename}`);
        b.addEventListener("click", onClick);
        return b;
      };
      cell("name", "Name", record.filename, `${record.filename}\n${record.content_type}`);
      cell("num", "Size", formatBytes(record.size), `${record.size} bytes`);
      const sha = cell("sha", "sha256", null, record.sha256);
      const shaText = document.createElement("span");
      shaText.className = "sha-text";
      shaText.textContent = `${record.sha256.slice(0, 16)}…`;
      sha.append(
        shaText,
        button("copy-sha", "Copy", "Copy the sha256 of", () => copyText(record.sha256, "the sha256")),
      );
      cell("when", "Uploaded", formatDate(record.created), record.created);
      const actions = cell("actions", "", null);

      const fileUrl = new URL(`/api/files/${encodeURIComponent(record.id)}`, global.location.href).href;
      const download = document.createElement("a");
      download.className = "action download";
      download.textContent = "Download";
      download.href = fileUrl;
      download.download = record.filename;
      download.setAttribute("aria-label", `Download ${record.filename}`);
      download.addEventListener("click", (event) => {
        // A link cannot carry the Authorization header: with a token, fetch the bytes.
        if (!auth.token) return;
        event.preventDefault();
        downloadWithToken(record).catch((error) => showFilesError(error.message));
      });

      const link = button("copy-link", "Link", "Copy a link to", async () => {
        if (!auth.token) {
          copyText(fileUrl, "the download link");
          return;
        }
        // With a token, a signed share link that works without it, for a while.
        const response = await apiFetch(`/api/files/${encodeURIComponent(record.id)}/share`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: "{}",
        });
        if (!response.ok) {
          showFilesError(await responseError(response, null));
          return;
        }
        const made = await response.json();
        copyText(made.url, `a share link (valid until ${formatDate(made.expires)})`);
      });

      const curl = button("copy-curl", "curl", "Copy a curl command for", () => {
        const auth_ = auth.token ? ' -H "Authorization: Bearer $SPOOLUP_TOKEN"' : "";
        copyText(`curl -fL${auth_} -o ${shellQuote(record.filename)} ${shellQuote(fileUrl)}`, "a curl command");
      });

      const remove = button("delete", "Delete", "Delete", null);
      let timer = null;
      remove.addEventListener("click", async () => {
        if (!remove.classList.contains("confirm")) {
          remove.classList.add("confirm");
          remove.textContent = "Delete?";
          timer = setTimeout(() => {
            remove.classList.remove("confirm");
            remove.textContent = "Delete";
          }, 4000);
          return;
        }
        clearTimeout(timer);
        remove.disabled = true;
        const response = await apiFetch(`/api/files/${encodeURIComponent(record.id)}`, { method: "DELETE" });
        if (response.status === 204 || response.status === 404) {
          tr.remove();
          this.refresh();
        } else {
          showFilesError(await responseError(response, null));
          remove.disabled = false;
        }
      });
      actions.append(download, link, curl, remove);
      return tr;
    },
  };

  function showFilesError(message) {
    const box = $("files-error");
    box.textContent = message;
    box.hidden = false;
  }

  async function downloadWithToken(record) {
    const response = await apiFetch(`/api/files/${encodeURIComponent(record.id)}`);
    if (!response.ok) throw new Error(await responseError(response, null));
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = record.filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function setUpFiles() {
    let timer = null;
    $("files-search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => files.refresh(), 250);
    });
    $("files-sort").addEventListener("change", () => files.refresh());
    $("files-more").addEventListener("click", () => files.more());
    $("refresh").addEventListener("click", () => files.refresh());
  }

  // ---------------------------------------------------------------- upload links

  function setUpRequests() {
    $("request-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const errorBox = $("request-error");
      errorBox.hidden = true;
      const body = {
        max_files: Number($("request-files").value) || 10,
        max_size: Math.round(Number($("request-size").value) * 1e6) || undefined,
        ttl: $("request-ttl").value,
      };
      const response = await apiFetch("/api/upload-links", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        errorBox.textContent = await responseError(response, null);
        errorBox.hidden = false;
        return;
      }
      const made = await response.json();
      $("request-url").value = made.url;
      $("request-note").textContent =
        `Up to ${made.max_files} file${made.max_files === 1 ? "" : "s"} of ${formatBytes(made.max_size)} each, until ${formatDate(made.expires)}.`;
      $("request-result").hidden = false;
    });
    $("request-copy").addEventListener("click", () => copyText($("request-url").value, "the upload link"));
  }

  // ---------------------------------------------------------------- image check

  function setUpInspect() {
    let previewUrl = null;
    const check = async (file) => {
      const errorBox = $("inspect-error");
      const result = $("inspect-result");
      errorBox.hidden = true;
      const most = limits.info ? limits.info.inspect_max_size : null;
      try {
        if (most !== null && file.size > most) throw new Error(tooBig(file, most));
        const form = new FormData();
        form.append("image", file, file.name);
        const response = await apiFetch("/api/inspect/image", { method: "POST", body: form });
        if (!response.ok) {
          const said = serverMessage(await response.clone().text());
          throw new Error(response.status === 415 && said ? said : await responseError(response, file));
        }
        const info = await response.json();
        if (previewUrl) URL.revokeObjectURL(previewUrl);
        previewUrl = URL.createObjectURL(file);
        $("inspect-preview").src = previewUrl;
        $("inspect-name").textContent = file.name;
        $("inspect-name").title = file.name;
        $("inspect-dims").textContent = `${info.width} × ${info.height} px · ${formatBytes(file.size)}`;
        $("inspect-format").textContent = info.format;
        const badge = document.createElement("span");
        badge.className = `badge ${info.all_white ? "yes" : "no"}`;
        badge.textContent = info.all_white ? "Yes" : "No";
        $("inspect-white").replaceChildren(badge);
        result.dataset.allWhite = String(info.all_white);
        result.hidden = false;
      } catch (error) {
        result.hidden = true;
        errorBox.textContent = error.message;
        errorBox.hidden = false;
      }
    };
    dropTarget($("image-drop"), $("image-input"), (list) => check(list[0]));
  }

  // ---------------------------------------------------------------- start-up

  async function checkHealth() {
    const status = $("status");
    try {
      const response = await fetch("/healthz");
      status.className = `status ${response.ok ? "ok" : "bad"}`;
      status.querySelector(".label").textContent = response.ok ? "storage ready" : "storage unavailable";
    } catch (_) {
      status.className = "status bad";
      status.querySelector(".label").textContent = "server unreachable";
    }
  }

  async function startLinkPage() {
    document.body.classList.add("link-mode");
    for (const id of ["inspect-card", "files-card", "request-card"]) $(id).remove();
    $("tagline").textContent = "send files";
    $("upload-title").textContent = "Send files";
    try {
      showLimits(await limits.load());
    } catch (error) {
      $("dropzone").hidden = true;
      const box = $("upload-error");
      box.textContent = error.message;
      box.hidden = false;
    }
  }

  function start() {
    dropTarget($("dropzone"), $("file-input"), enqueue);
    // A file dropped beside a drop zone must not replace the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    $("clear-finished").addEventListener("click", clearFinished);
    checkHealth();
    if (LINK_BASE) {
      startLinkPage();
      return;
    }
    setUpInspect();
    setUpFiles();
    setUpRequests();
    unfinished.show();
    limits.load().then(showLimits, (error) => {
      $("upload-error").textContent = error.message;
      $("upload-error").hidden = false;
    });
    files.refresh();
  }

  start();
})(window);
