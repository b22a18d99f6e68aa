/** A real local HTTP server for source tests: serves folders under URL prefixes, with Range support. */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join, normalize } from 'node:path';

export interface ServedFolders {
  origin: string;
  requests: string[];
  close(): Promise<void>;
}

/** routes: URL prefix (e.g. "/org/model/resolve/main/") -> folder on disk. */
export async function serveFolders(routes: Record<string, string>): Promise<ServedFolders> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(url);
    const prefix = Object.keys(routes).find((p) => url.startsWith(p));
    const rel = prefix === undefined ? null : normalize(url.slice(prefix.length));
    if (prefix === undefined || rel === null || rel.startsWith('..')) {
      res.writeHead(404).end();
      return;
    }
    const path = join(routes[prefix], rel);
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404).end('not found');
      return;
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
      createReadStream(path, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
