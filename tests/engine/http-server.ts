/**
 * A real local HTTP server for source tests: serves folders under URL prefixes, with Range support, and
 * optionally the hub's tree API (a JSON listing of a folder's files, as huggingface.co answers it).
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join, normalize } from 'node:path';

export interface ServedFolders {
  origin: string;
  requests: string[];
  /** The Authorization header of each request, in order (undefined: none). */
  authorizations: (string | undefined)[];
  close(): Promise<void>;
}

export interface ServeOptions {
  /**
   * Exact API paths (e.g. "/api/models/org/model/tree/main") -> folder on disk: answered with the hub's
   * JSON listing of the folder's files: [{type: 'file', oid, size, path, lfs?: {oid, size, pointerSize}}].
   */
  hubTrees?: Record<string, string>;
  /** Exact API paths ("/api/models/org/model/revision/main") -> the commit the hub's revision API answers. */
  revisions?: Record<string, string>;
  /**
   * A gated repository, as huggingface.co answers for one: path prefix ("/org/model/" and its API paths
   * under "/api/models/org/model/") -> the token that opens it. No token: 401; another token: 403.
   */
  gated?: Record<string, string>;
}

/** The hub tree API's answer for a folder (top level only); *.safetensors are listed as LFS files. */
export function hubTreeListing(folder: string): unknown[] {
  return readdirSync(folder, { withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => {
      const size = statSync(join(folder, d.name)).size;
      const oid = '0'.repeat(40);
      return d.name.endsWith('.safetensors')
        ? { type: 'file', oid, size, path: d.name, lfs: { oid: '0'.repeat(64), size, pointerSize: 134 } }
        : { type: 'file', oid, size, path: d.name };
    })
    .sort((a, b) => a.path.localeCompare(b.path));
}

/** routes: URL prefix (e.g. "/org/model/resolve/main/") -> folder on disk. */
export async function serveFolders(routes: Record<string, string>, options: ServeOptions = {}): Promise<ServedFolders> {
  const requests: string[] = [];
  const authorizations: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(url);
    authorizations.push(req.headers.authorization);
    for (const [prefix, token] of Object.entries(options.gated ?? {})) {
      if (!url.startsWith(prefix) && !url.startsWith(`/api/models${prefix}`)) continue;
      const given = req.headers.authorization;
      if (given === `Bearer ${token}`) break;
      const status = given ? 403 : 401;
      res
        .writeHead(status, { 'content-type': 'text/plain' })
        .end(status === 401 ? 'Access to this model is restricted. You must be authenticated.' : 'Access to this model is restricted.');
      return;
    }
    const sha = options.revisions?.[url];
    if (sha !== undefined) {
      const body = JSON.stringify({ id: url.split('/').slice(3, 5).join('/'), sha });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const tree = options.hubTrees?.[url];
    if (tree !== undefined) {
      const body = JSON.stringify(hubTreeListing(tree));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
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
    authorizations,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
