// spoolup's tus 1.0.0 client for the web page: creation, resume, PATCH in chunks.
//
//   const handle = SpoolupTus.upload(file, {
//     endpoint: "/tus/", token: null, chunkSize: 8 * 1024 * 1024,
//     onProgress(sent, total) {}, onSuccess({url, fileId}) {}, onError(err) {},
//   });
//   handle.abort();            // stops sending; the upload stays resumable
//   await handle.done;         // resolves with {url, fileId}, rejects on failure
//
// The upload URL is kept in localStorage under the file's name, size and mtime, so a
// reload or a dropped connection resumes from the server's offset (asked with HEAD)
// instead of starting again. Each chunk carries an Upload-Checksum (sha256), as the
// Python client's do, so a chunk damaged on the way is refused and sent again (the
// Web Crypto API needs a secure context: on plain http beyond localhost, no checksum).
// Nothing is fetched from anywhere but the endpoint.
(function (global) {
  "use strict";

  const VERSION = "1.0.0";
  const RETRY_DELAYS = [500, 1000, 3000, 5000, 10000];

  class TusError extends Error {
    constructor(message, status) {
      super(message);
      this.name = "TusError";
      this.status = status || 0;
    }
  }

  function storageKey(endpoint, file) {
    return `spoolup-tus:${endpoint}:${file.name}:${file.size}:${file.lastModified}`;
  }

  function remember(key, url) {
    try {
      if (url) global.localStorage.setItem(key, url);
      else global.localStorage.removeItem(key);
    } catch (_) {
      // Private mode or storage full: the upload still works, it just cannot resume.
    }
  }

  function recall(key) {
    try {
      return global.localStorage.getItem(key);
    } catch (_) {
      return null;
    }
  }

  function b64(text) {
    return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
  }

  // "sha256 <base64 digest>" of a chunk, or null where Web Crypto is unavailable.
  async function checksum(blob) {
    const subtle = global.crypto && global.crypto.subtle;
    if (!subtle) return null;
    const digest = new Uint8Array(await subtle.digest("SHA-256", await blob.arrayBuffer()));
    return `sha256 ${btoa(String.fromCharCode(...digest))}`;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function upload(file, options) {
    const opts = Object.assign(
      { endpoint: "/tus/", token: null, chunkSize: 8 * 1024 * 1024 },
      options || {},
    );
    const key = storageKey(opts.endpoint, file);
    let xhr = null;
    let aborted = false;

    // One request; resolves with the XHR once it is answered (any status), rejects
    // with a TusError(status 0) when the connection failed.
    function request(method, url, headers, body, onSent) {
      return new Promise((resolve, reject) => {
        if (aborted) return reject(new TusError("aborted", 0));
        xhr = new XMLHttpRequest();
        xhr.open(method, url, true);
        xhr.setRequestHeader("Tus-Resumable", VERSION);
        if (opts.token) xhr.setRequestHeader("Authorization", `Bearer ${opts.token}`);
        for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
        if (onSent) xhr.upload.onprogress = (e) => onSent(e.loaded);
        const current = xhr;
        current.onload = () => resolve(current);
        current.onerror = () => reject(new TusError(`${method} failed: network error`, 0));
        current.onabort = () => reject(new TusError("aborted", 0));
        current.send(body === undefined ? null : body);
      });
    }

    // Retries dropped connections, 423 (locked by a request still ending) and 5xx.
    async function withRetries(make) {
      for (let attempt = 0; ; attempt++) {
        let res = null;
        try {
          res = await make();
        } catch (err) {
          if (aborted || attempt >= RETRY_DELAYS.length) throw err;
        }
        if (res && !(res.status === 423 || res.status >= 500)) return res;
        if (res && attempt >= RETRY_DELAYS.length) return res;
        await sleep(RETRY_DELAYS[attempt]);
      }
    }

    function fail(res, what) {
      let detail = "";
      try {
        detail = JSON.parse(res.responseText).error || "";
      } catch (_) {
        detail = res.statusText;
      }
      return new TusError(`${what}: ${res.status} ${detail}`.trim(), res.status);
    }

    async function offsetOf(url) {
      const res = await withRetries(() => request("HEAD", url, {}));
      if (res.status !== 200) return null;
      if (res.getResponseHeader("Upload-Length") !== String(file.size)) return null;
      const offset = Number(res.getResponseHeader("Upload-Offset"));
      return Number.isSafeInteger(offset) ? offset : null;
    }

    async function create() {
      const meta = `filename ${b64(file.name)},filetype ${b64(file.type || "application/octet-stream")}`;
      const res = await withRetries(() =>
        request("POST", opts.endpoint, {
          "Upload-Length": String(file.size),
          "Upload-Metadata": meta,
        }),
      );
      const location = res.getResponseHeader("Location");
      if (res.status !== 201 || !location) throw fail(res, "creating the upload");
      return new URL(location, new URL(opts.endpoint, global.location.href)).href;
    }

    async function run() {
      let url = recall(key);
      let offset = url ? await offsetOf(url) : null;
      if (url === null || offset === null) {
        url = await create();
        offset = 0;
        remember(key, url);
      }
      const progress = (n) => opts.onProgress && opts.onProgress(Math.min(n, file.size), file.size);
      progress(offset);
      let fileId = null;
      for (;;) {
        const end = Math.min(offset + opts.chunkSize, file.size);
        const start = offset;
        const chunk = file.slice(start, end);
        const headers = {
          "Content-Type": "application/offset+octet-stream",
          "Upload-Offset": String(start),
        };
        const sum = await checksum(chunk);
        if (sum) headers["Upload-Checksum"] = sum;
        let res;
        try {
          res = await withRetries(() =>
            request("PATCH", url, headers, chunk, (loaded) => progress(start + loaded)),
          );
        } catch (err) {
          if (aborted) throw err;
          res = null;
        }
        if (res && res.status === 204) {
          offset = Number(res.getResponseHeader("Upload-Offset"));
          fileId = res.getResponseHeader("Spoolup-File-Id");
        } else if (res === null || res.status === 409 || res.status === 460) {
          // The connection dropped mid-chunk, we are out of step, or the chunk arrived
          // damaged (460, checksum mismatch): ask the server where to go on from.
          const current = await offsetOf(url);
          if (current === null) throw new TusError("the upload is gone from the server", 404);
          offset = current;
        } else {
          if (res.status === 404 || res.status === 410) remember(key, null);
          throw fail(res, "sending a chunk");
        }
        progress(offset);
        if (offset >= file.size) break;
      }
      remember(key, null);
      return { url, fileId };
    }

    const done = run().then(
      (result) => {
        if (opts.onSuccess) opts.onSuccess(result);
        return result;
      },
      (err) => {
        if (opts.onError) opts.onError(err);
        throw err;
      },
    );
    // Callers that use the callbacks need not handle the promise.
    done.catch(() => {});

    return {
      done,
      abort() {
        aborted = true;
        if (xhr) xhr.abort();
      },
    };
  }

  global.SpoolupTus = { upload, TusError, storageKey };
})(typeof window !== "undefined" ? window : globalThis);
