/** Runs the CLI in-process (main() of cli/prunelab.ts) and copies model folders with edits, for the CLI input tests. */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../cli/prunelab.ts';

export interface CliResult {
  code: number;
  stdout: string[];
  stderr: string;
}

export async function cli(args: string[]): Promise<CliResult> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await main(
    args,
    (t) => stdout.push(t),
    (t) => stderr.push(t),
  );
  return { code, stdout, stderr: stderr.join('\n') };
}

export const EMBEDDED = join(import.meta.dirname, '..', '..', 'public', 'models', 'sotu-llama');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `prunelab-${prefix}-`));
}

export function tempFile(name: string, content: string): string {
  const path = join(tempDir('input'), name);
  writeFileSync(path, content);
  return path;
}

/** A copy of a model folder with config.json fields replaced. */
export function modelCopy(from: string, config: Record<string, unknown> = {}): string {
  const dir = tempDir('model');
  cpSync(from, dir, { recursive: true });
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), ...config }));
  return dir;
}

/**
 * Rewrites elements of one tensor in a copied single-file checkpoint, read with its own safetensors
 * header parse (not the engine's): `edit(view, byteOffset, dtype, count)` writes raw bits.
 */
export function editTensor(dir: string, tensor: string, edit: (view: DataView, begin: number, dtype: string, count: number) => void): void {
  const path = join(dir, 'model.safetensors');
  const bytes = readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const entry = header[tensor];
  if (!entry) throw new Error(`${tensor} is not in ${path}`);
  const begin = 8 + headerLength + entry.data_offsets[0];
  const count = entry.shape.reduce((a, b) => a * b, 1);
  edit(view, begin, entry.dtype, count);
  writeFileSync(path, bytes);
}
