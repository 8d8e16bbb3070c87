// @tus/server on 127.0.0.1:<port> at /files/, storing in a folder or in s3://<bucket>.
import http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";
import { S3Store } from "@tus/s3-store";

const [port, target] = process.argv.slice(2);
const env = process.env;
const s3ClientConfig = {
  bucket: target.slice("s3://".length), endpoint: env.AWS_ENDPOINT_URL, region: env.AWS_REGION,
  forcePathStyle: true,
  credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
};
const datastore = target.startsWith("s3://")
  ? new S3Store({ partSize: 8 * 1024 * 1024, s3ClientConfig })
  : new FileStore({ directory: target });
const tus = new Server({ path: "/files", datastore });
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), "127.0.0.1");
