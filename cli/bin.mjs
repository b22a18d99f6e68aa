#!/usr/bin/env node
// Entry point for `npx prunelab`: runs the TypeScript CLI through tsx. For `--backend webgpu` in Node,
// Dawn needs a Vulkan driver; where none is configured we re-exec with Chromium's SwiftShader ICD.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const wantsWebGpu = args.some((a, i) => (a === '--backend' && args[i + 1] === 'webgpu') || a === '--backend=webgpu');
const icd = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (wantsWebGpu && !process.env.VK_ICD_FILENAMES && !process.env.PRUNELAB_NO_REEXEC && existsSync(icd)) {
  const env = { ...process.env, VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'), PRUNELAB_NO_REEXEC: '1' };
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: 'inherit', env });
  process.exit(r.status ?? 1);
}
const { register } = await import('tsx/esm/api');
register();
const { main } = await import(join(here, 'prunelab.ts'));
// Exit explicitly: a live Dawn instance would otherwise keep Node running after the work is done.
process.exit(await main(args));
