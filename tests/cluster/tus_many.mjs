// Uploads several files at once with tus-js-client (installed by `npm ci` in tests/tus/js).
// usage: node tus_many.mjs ENDPOINT CHUNK_SIZE FILE...
// Prints one JSON line: a list of {file, url, creates, offsets, record} per file, where
// `offsets` are the Upload-Offset of every PATCH sent and `record` the file record the
// last PATCH answered with (base64 JSON in Spoolup-File-Record).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename } from "node:path";

const require = createRequire(new URL("../tus/js/package.json", import.meta.url));
const tus = require("tus-js-client");

const [endpoint, chunk, ...files] = process.argv.slice(2);
// Retries for a minute: a killed server's lease lapses within seconds.
const retryDelays = [0, 200, 500, ...Array(60).fill(1000)];

function upload(file) {
  const data = readFileSync(file);
  const result = { file, url: null, creates: 0, offsets: [], record: null };
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(data, {
      endpoint,
      chunkSize: Number(chunk),
      retryDelays,
      metadata: { filename: basename(file), filetype: "application/octet-stream" },
      onBeforeRequest(req) {
        if (req.getMethod() === "POST") result.creates += 1;
        if (req.getMethod() === "PATCH") result.offsets.push(Number(req.getHeader("Upload-Offset")));
      },
      onAfterResponse(req, res) {
        const record = res.getHeader("Spoolup-File-Record");
        if (record) result.record = JSON.parse(Buffer.from(record, "base64").toString());
      },
      onError: reject,
      onSuccess() {
        result.url = up.url;
        resolve(result);
      },
    });
    up.start();
  });
}

const results = await Promise.all(files.map(upload));
console.log(JSON.stringify(results));
