// Drives tus-js-client under Node against a spoolup tus server.
// usage: node upload.mjs ENDPOINT FILE MODE   (MODE: whole | resume)
// Prints one JSON line: {"url": ..., "abortedAt": n, "resumedFrom": n}.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import * as tus from "tus-js-client";

const [endpoint, file, mode] = process.argv.slice(2);
const data = readFileSync(file);

// Upload `data`; `stopAt(sent)` returning true aborts the upload there (as a dropped
// connection or a closed tab would) and resolves with the upload left on the server.
function run(extra, stopAt = () => false) {
  return new Promise((resolve, reject) => {
    let first = null;
    let stopped = null;
    const upload = new tus.Upload(data, {
      endpoint,
      chunkSize: 64 * 1024,
      retryDelays: [0, 100, 200, 400],
      metadata: { filename: basename(file), filetype: "application/octet-stream" },
      onError: reject,
      onSuccess: () => resolve({ upload, first, stopped }),
      onProgress(sent) {
        if (first === null) first = sent;
        if (stopped === null && stopAt(sent)) {
          stopped = sent;
          upload.abort().then(() => resolve({ upload, first, stopped }), reject);
        }
      },
      ...extra,
    });
    upload.start();
  });
}

const result = {};
if (mode === "whole") {
  const { upload } = await run({});
  result.url = upload.url;
} else {
  const half = await run({}, (sent) => sent >= data.length / 2);
  result.abortedAt = half.stopped;
  const rest = await run({ uploadUrl: half.upload.url });
  result.url = rest.upload.url;
  result.resumedFrom = rest.first;
}
console.log(JSON.stringify(result));
