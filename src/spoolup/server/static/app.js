// spoolup's page. Plain JavaScript, no build step, nothing fetched from outside.
//
// Layout of this file:
//   format helpers | auth (token asked once, kept in sessionStorage) | apiFetch
//   uploaders: one function per transport that uploads ONE file and reports progress
//              (formUpload: one multipart POST; tusUpload: resumable, /tus/ via tus.js);
//              pickUploader(file) chooses one by size (TUS_THRESHOLD)
//   upload queue (UI items, speed and time left, at most MAX_PARALLEL at once)
//   stored files list | image check panel | start-up
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

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- format helpers

  function formatBytes(n) {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    const digits = i === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2;
    return `${n.toFixed(digits)} ${units[i]}`;
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

  // Reads the server's JSON {"error": "..."}, else says what the status was.
  function errorText(status, body) {
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.error === "string") return parsed.error;
    } catch (_) {
      // not JSON: fall through
    }
    if (status === 0) return "The connection to the server was lost.";
    return `The server answered ${status}.`;
  }

  async function responseError(response) {
    return errorText(response.status, await response.text());
  }

  // ---------------------------------------------------------------- auth

  const auth = {
    pending: null,

    get token() {
      return sessionStorage.getItem(TOKEN_KEY);
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
      if (response.status !== 401) return response;
      await auth.ask();
    }
  }

  // ---------------------------------------------------------------- uploaders

  class Cancelled extends Error {}

  // Uploads one file as multipart/form-data to POST /api/files.
  //   onProgress(sentBytes, totalBytes) is called as bytes leave the browser.
  //   Returns { promise, cancel }: promise resolves to the server's record for the file
  //   and rejects with Cancelled or an Error whose message is the server's.
  function formUpload(file, onProgress) {
    let xhr = null;
    let cancelled = false;

    const attempt = () => new Promise((resolve, reject) => {
      xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/files");
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
        const authProblem = status === 401 || (status === 0 && tries === 0 && (await needsToken()));
        if (authProblem && tries < 2 && !cancelled) {
          await auth.ask();
          onProgress(0, file.size);
          continue;
        }
        throw new Error(errorText(status, body));
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
          throw new Error(error.status === 0 ? errorText(0, "") : error.message);
        }
      }
    };

    return {
      promise: run(),
      cancel() {
        cancelled = true;
        if (handle) handle.abort();
        // Cancelled means not wanted: end the upload on the server too (termination).
        const url = localStorage.getItem(key);
        localStorage.removeItem(key);
        if (url) terminate(url);
      },
    };
  }

  async function terminate(url) {
    // 423 while the aborted PATCH is still ending on the server: try again shortly.
    for (let tries = 0; tries < 5; tries += 1) {
      try {
        const response = await fetch(url, {
          method: "DELETE",
          headers: { "Tus-Resumable": "1.0.0", ...auth.headers() },
        });
        if (response.status !== 423) return;
      } catch (_) {
        // the server is unreachable: it expires the upload by itself
      }
      await sleep(500);
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

  // Unfinished tus uploads kept by tus.js in localStorage: "name:size:mtime" after the
  // endpoint. Shown so the user knows that picking the same file again resumes it.
  function unfinishedUploads() {
    const prefix = `spoolup-tus:${TUS_ENDPOINT}:`;
    const found = [];
    try {
      for (let i = 0; i < localStorage.length; i += 1) {
        const name = localStorage.key(i);
        if (!name || !name.startsWith(prefix)) continue;
        const parts = name.slice(prefix.length).split(":");
        if (parts.length < 3) continue;
        const size = Number(parts[parts.length - 2]);
        found.push({ name: parts.slice(0, -2).join(":"), size });
      }
    } catch (_) {
      // localStorage unavailable: nothing to resume
    }
    return found;
  }

  function showUnfinished() {
    const hint = $("resume-hint");
    const found = unfinishedUploads();
    hint.hidden = found.length === 0;
    if (found.length === 0) return;
    const names = found.map((u) => `${u.name} (${formatBytes(u.size)})`).join(", ");
    hint.textContent = `Unfinished: ${names}. Choose the same file again to resume where it stopped.`;
  }

  async function needsToken() {
    try {
      const response = await fetch("/api/files", { headers: auth.headers() });
      return response.status === 401;
    } catch (_) {
      return false;
    }
  }

  // The one place that decides how a file travels: large files by tus (resumable).
  function pickUploader(file) {
    return file.size >= TUS_THRESHOLD && global.SpoolupTus ? tusUpload : formUpload;
  }

  // ---------------------------------------------------------------- upload queue

  const waiting = [];
  let active = 0;

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
      node.querySelector(".item-name").textContent = file.name;
      node.querySelector(".item-name").title = file.name;
      node.dataset.filename = file.name;
      this.cancelButton.addEventListener("click", () => this.cancel());
      this.setState("waiting", `Waiting · ${formatBytes(file.size)}`);
      $("queue").prepend(node);
    }

    setState(state, text) {
      this.node.className = `item ${state}`;
      this.node.dataset.state = state;
      this.stats.textContent = text;
      const finished = state === "done" || state === "failed" || state === "cancelled";
      this.cancelButton.title = finished ? "Remove" : "Cancel";
      this.cancelButton.setAttribute("aria-label", this.cancelButton.title);
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
      this.setState("uploading", `0 B of ${formatBytes(this.file.size)} · 0 %`);
      const upload = pickUploader(this.file);
      this.node.dataset.transport = upload === tusUpload ? "tus" : "form";
      this.handle = upload(this.file, (sent, total) => this.progress(sent, total), {
        resumed: (offset) => this.resumed(offset),
        retrying: (seconds) => this.retrying(seconds),
      });
      try {
        const record = await this.handle.promise;
        const seconds = (performance.now() - started) / 1000;
        const resumed = this.resumedFrom ? ` · resumed at ${formatBytes(this.resumedFrom)}` : "";
        this.setPercent(100);
        this.setState(
          "done",
          `Stored · ${formatBytes(record.size)} in ${formatDuration(seconds)} · sha256 ${record.sha256.slice(0, 12)}…${resumed}`,
        );
        this.node.dataset.id = record.id;
        files.refresh();
      } catch (error) {
        if (error instanceof Cancelled) this.setState("cancelled", "Cancelled");
        else this.setState("failed", error.message);
      }
      showUnfinished();
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
      }
    }
  }

  function enqueue(fileList) {
    for (const file of fileList) waiting.push(new QueueItem(file));
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

  function setUpDropzone() {
    const zone = $("dropzone");
    const input = $("file-input");
    input.addEventListener("change", () => {
      if (input.files.length) enqueue(Array.from(input.files));
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
      if (dropped.length) enqueue(dropped);
    });
    // A file dropped beside the zone must not replace the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
  }

  // ---------------------------------------------------------------- stored files

  const files = {
    loading: null,
    again: false,

    // One listing at a time; a refresh asked for meanwhile runs once after it.
    refresh() {
      if (this.loading) {
        this.again = true;
        return this.loading;
      }
      this.loading = this.load().finally(() => {
        this.loading = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
      return this.loading;
    },

    async load() {
      const errorBox = $("files-error");
      try {
        const response = await apiFetch("/api/files");
        if (!response.ok) throw new Error(await responseError(response));
        const records = await response.json();
        errorBox.hidden = true;
        this.render(records);
      } catch (error) {
        errorBox.textContent = error.message;
        errorBox.hidden = false;
      }
    },

    render(records) {
      records.sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
      const rows = $("file-rows");
      rows.replaceChildren(...records.map((record) => this.row(record)));
      $("files-count").textContent = records.length ? String(records.length) : "";
      $("files-empty").hidden = records.length > 0;
      $("file-table").hidden = records.length === 0;
    },

    row(record) {
      const tr = document.createElement("tr");
      tr.dataset.id = record.id;
      tr.dataset.filename = record.filename;
      const cell = (className, text, title) => {
        const td = document.createElement("td");
        td.className = className;
        td.textContent = text;
        if (title) td.title = title;
        tr.append(td);
        return td;
      };
      cell("name", record.filename, `${record.filename}\n${record.content_type}`);
      cell("num", formatBytes(record.size), `${record.size} bytes`);
      cell("sha", `${record.sha256.slice(0, 16)}…`, record.sha256);
      cell("when", formatDate(record.created), record.created);
      const actions = cell("actions", "");

      const download = document.createElement("a");
      download.className = "action download";
      download.textContent = "Download";
      download.href = `/api/files/${encodeURIComponent(record.id)}`;
      download.download = record.filename;
      download.addEventListener("click", (event) => {
        // A link cannot carry the Authorization header: with a token, fetch the bytes.
        if (!auth.token) return;
        event.preventDefault();
        downloadWithToken(record).catch((error) => showFilesError(error.message));
      });

      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "action delete";
      remove.textContent = "Delete";
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
          showFilesError(await responseError(response));
          remove.disabled = false;
        }
      });
      actions.append(download, remove);
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
    if (!response.ok) throw new Error(await responseError(response));
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = record.filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ---------------------------------------------------------------- image check

  function setUpInspect() {
    const input = $("image-input");
    let previewUrl = null;
    input.addEventListener("change", async () => {
      const file = input.files[0];
      input.value = "";
      if (!file) return;
      const errorBox = $("inspect-error");
      const result = $("inspect-result");
      errorBox.hidden = true;
      const form = new FormData();
      form.append("image", file, file.name);
      try {
        const response = await apiFetch("/api/inspect/image", { method: "POST", body: form });
        if (!response.ok) throw new Error(await responseError(response));
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
    });
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

  function start() {
    setUpDropzone();
    setUpInspect();
    $("refresh").addEventListener("click", () => files.refresh());
    showUnfinished();
    checkHealth();
    files.refresh();
  }

  start();
})(window);
