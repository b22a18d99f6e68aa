// A static server on 127.0.0.1 for the Chromium bench runs, with COOP/COEP (cross-origin isolation, so
// onnxruntime-web may use wasm threads and timers are fine-grained). Routes: /models/<name>/... → that
// model's folder, /ort/... → onnxruntime-web's dist (wasm), everything else → the built bench page.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.map': 'application/json',
};

/** mounts: { '/prefix/': '/abs/dir', ... } (longest prefix wins). Resolves to { url, close }. */
export function serve(mounts) {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const prefix = prefixes.find((p) => path.startsWith(p));
    const rel = normalize(path.slice(prefix?.length ?? 0)).replace(/^(\.\.[/\\])+/, '');
    let file = prefix === undefined ? null : join(mounts[prefix], rel || 'index.html');
    let size = 0;
    try {
      const st = file ? statSync(file) : null;
      if (st?.isDirectory()) file = join(file, 'index.html');
      size = file ? statSync(file).size : 0;
    } catch {
      file = null;
    }
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    };
    if (!file) {
      res.writeHead(404, headers).end('not found');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}
