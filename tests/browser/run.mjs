#!/usr/bin/env node
// Browser tests: build the app (vite build), serve dist/ on 127.0.0.1, drive Debian's chromium with
// playwright-core, run every check exported by tests/browser/*.checks.mjs, print one line per check and a
// closing "N passed, N failed, N skipped" line; exit non-zero on any failure, and when no check ran.
//
// A module's `backends` (default ['cpu']) lists the backends its checks run on: the module runs once per
// backend (its check names prefixed "[cpu]" / "[webgpu]"), with `backend` in its context; a check's own
// `backends` narrows that. The webgpu pass asks the page for ?backend=webgpu and the CLI for --backend webgpu.
//
// Environment: CHROME_PATH (default /usr/bin/chromium); PRUNELAB_E2E_BACKENDS = the passes to run (default
// cpu,webgpu); PRUNELAB_NO_WEBGPU=1 skips (and counts) every webgpu check, for a machine with no WebGPU path;
// PRUNELAB_SKIP_BUILD=1 to reuse dist/; SCREENSHOT_DIR (default test-results/browser) for the screenshots the
// checks take; PRUNELAB_CHECKS = a substring filter on names, PRUNELAB_CHECK_FILES = comma-separated
// substrings of the module file names to run (a filter that matches nothing is a failure).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { register } from 'tsx/esm/api';
import { serve } from './serve.mjs';

// Check modules import the engine's own TypeScript facts (e.g. plan.ts removalKey) instead of copying them.
register();

const root = join(import.meta.dirname, '..', '..');
const started = Date.now();
const CHROME_ARGS = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** `--backend webgpu` in the CLI needs Chromium's SwiftShader Vulkan driver in its environment. */
const CHILD_ENV = existsSync(ICD)
  ? { ...process.env, VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES || ICD, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') }
  : process.env;
const noWebGpu = process.env.PRUNELAB_NO_WEBGPU === '1';
const wantedBackends = (process.env.PRUNELAB_E2E_BACKENDS || 'cpu,webgpu').split(',').map((b) => b.trim());

/** Runs a command; resolves to { code, stdout, stderr }. */
export function run(cmd, args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env: CHILD_ENV, ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.on('error', (e) => resolve({ code: -1, stdout, stderr: String(e) }));
  });
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

async function main() {
  const chromePath = process.env.CHROME_PATH || '/usr/bin/chromium';
  if (!existsSync(chromePath)) {
    console.error(`No Chromium at ${chromePath}: install Debian's chromium (apt-get install chromium) or set CHROME_PATH.`);
    console.log('0 passed, 1 failed, 0 skipped');
    return 1;
  }
  const screenshotDir = process.env.SCREENSHOT_DIR || join(root, 'test-results', 'browser');
  mkdirSync(screenshotDir, { recursive: true });

  const files = process.env.PRUNELAB_CHECK_FILES?.split(',').filter(Boolean);
  const modules = readdirSync(import.meta.dirname)
    .filter((f) => f.endsWith('.checks.mjs') && (!files || files.some((part) => f.includes(part))))
    .sort();
  const filter = process.env.PRUNELAB_CHECKS;
  /** One pass = one module on one backend; its checks are those the filter and the backends select. */
  const suites = [];
  let skipped = 0;
  for (const file of modules) {
    const mod = await import(pathToFileURL(join(import.meta.dirname, file)).href);
    const backends = mod.backends ?? ['cpu'];
    for (const backend of backends.filter((b) => wantedBackends.includes(b))) {
      const label = (check) => (mod.backends ? `[${backend}] ${check.name}` : check.name);
      const checks = (mod.checks ?? []).filter((c) => (c.backends ?? backends).includes(backend)).filter((c) => !filter || label(c).includes(filter));
      if (checks.length === 0) continue;
      if (backend === 'webgpu' && noWebGpu) {
        for (const check of checks) console.log(`skip - ${label(check)} (PRUNELAB_NO_WEBGPU=1)`);
        skipped += checks.length;
        continue;
      }
      suites.push({ file, mod, backend, checks, label });
    }
  }
  if (suites.length === 0) {
    console.log(
      `not ok - no check selected (PRUNELAB_CHECK_FILES=${files?.join(',') ?? ''}, PRUNELAB_CHECKS=${filter ?? ''}, PRUNELAB_E2E_BACKENDS=${wantedBackends.join(',')}${noWebGpu ? ', PRUNELAB_NO_WEBGPU=1' : ''})`,
    );
    console.log(`0 passed, 1 failed, ${skipped} skipped`);
    return 1;
  }

  // Work the checks need from Node (e.g. the CLI's numbers) starts now, alongside the build.
  const context = { root, run, screenshotDir };
  // A failed preparation (e.g. the CLI on a backend that cannot start) fails that pass's checks that need it, with its message.
  const prepared = suites.map(({ mod, backend }) =>
    mod.prepare
      ? Promise.resolve({ ...context, backend })
          .then(mod.prepare)
          .catch((e) => ({ error: e }))
      : Promise.resolve(null),
  );

  if (process.env.PRUNELAB_SKIP_BUILD !== '1') {
    const t = Date.now();
    const build = await run(process.execPath, [join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn']);
    if (build.code !== 0) {
      console.error(build.stdout, build.stderr);
      console.log('not ok - vite build');
      console.log(`0 passed, 1 failed, ${skipped} skipped`);
      return 1;
    }
    console.log(`# built dist/ in ${seconds(Date.now() - t)}`);
  }

  const server = await serve(join(root, 'dist'));
  const browser = await chromium.launch({ executablePath: chromePath, args: CHROME_ARGS });
  let passed = 0;
  let failed = 0;
  try {
    for (let s = 0; s < suites.length; s++) {
      const { file, mod, backend, checks, label } = suites[s];
      const suiteContext = { ...context, backend, browser, baseUrl: server.url, prepared: await prepared[s] };
      let state;
      try {
        state = mod.setup ? await mod.setup(suiteContext) : {};
      } catch (e) {
        // Every check of a pass whose page could not be set up fails, with the reason.
        failed += checks.length;
        for (const check of checks) console.log(`not ok - ${label(check)}: setup failed: ${e?.message ?? e}`);
        continue;
      }
      try {
        for (const check of checks) {
          const t = Date.now();
          let timer;
          try {
            await Promise.race([
              check.run({ ...suiteContext, ...state }),
              new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`timed out after ${seconds(check.timeout ?? 90_000)}`)), check.timeout ?? 90_000);
              }),
            ]);
            passed++;
            console.log(`ok - ${label(check)} (${seconds(Date.now() - t)})`);
          } catch (e) {
            failed++;
            console.log(`not ok - ${label(check)} (${seconds(Date.now() - t)}): ${(e?.stack ?? String(e)).split('\n').slice(0, 4).join('\n    ')}`);
            if (state.page) await state.page.screenshot({ path: join(screenshotDir, `failed-${label(check).replace(/\W+/g, '-').slice(0, 60)}.png`) }).catch(() => {});
          } finally {
            clearTimeout(timer);
          }
        }
      } finally {
        if (mod.teardown) await mod.teardown(state).catch(() => {});
      }
      console.log(`# ${file}${mod.backends ? ` [${backend}]` : ''} done`);
    }
  } finally {
    await browser.close();
    await server.close();
  }
  console.log(`# total ${seconds(Date.now() - started)}; screenshots in ${screenshotDir}`);
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped${noWebGpu ? ' — WEBGPU CHECKS SKIPPED (PRUNELAB_NO_WEBGPU=1)' : ''}`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

process.exitCode = await main().catch((e) => {
  console.error(e);
  console.log('0 passed, 1 failed, 0 skipped');
  return 1;
});
