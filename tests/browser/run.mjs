#!/usr/bin/env node
// Browser tests: build the app (vite build), serve dist/ on 127.0.0.1, drive Debian's chromium with
// playwright-core, run every check exported by tests/browser/*.checks.mjs, print one line per check and a
// closing "N passed, N failed" line; exit non-zero on any failure.
//
// Environment: CHROME_PATH (default /usr/bin/chromium); PRUNELAB_E2E_BACKEND = cpu (default) | auto | webgpu,
// the backend the lab checks ask the page for; PRUNELAB_SKIP_BUILD=1 to reuse dist/; SCREENSHOT_DIR (default
// test-results/browser) for the screenshots the checks take; PRUNELAB_CHECKS = a substring filter on names.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from './serve.mjs';

const root = join(import.meta.dirname, '..', '..');
const started = Date.now();
const CHROME_ARGS = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** Runs a command; resolves to { code, stdout, stderr }. */
export function run(cmd, args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, ...options, stdio: ['ignore', 'pipe', 'pipe'] });
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
    console.log('0 passed, 1 failed');
    return 1;
  }
  const screenshotDir = process.env.SCREENSHOT_DIR || join(root, 'test-results', 'browser');
  mkdirSync(screenshotDir, { recursive: true });

  const modules = readdirSync(import.meta.dirname)
    .filter((f) => f.endsWith('.checks.mjs'))
    .sort();
  const filter = process.env.PRUNELAB_CHECKS;
  const suites = [];
  for (const file of modules) {
    const mod = await import(pathToFileURL(join(import.meta.dirname, file)).href);
    suites.push({ file, mod });
  }

  // Work the checks need from Node (e.g. the CLI's numbers) starts now, alongside the build.
  const context = { root, run, screenshotDir, backend: process.env.PRUNELAB_E2E_BACKEND || 'cpu' };
  const prepared = suites.map(({ mod }) => (mod.prepare ? mod.prepare(context) : Promise.resolve(null)));

  if (process.env.PRUNELAB_SKIP_BUILD !== '1') {
    const t = Date.now();
    const build = await run(process.execPath, [join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn']);
    if (build.code !== 0) {
      console.error(build.stdout, build.stderr);
      console.log('not ok - vite build');
      console.log('0 passed, 1 failed');
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
      const { file, mod } = suites[s];
      const suiteContext = { ...context, browser, baseUrl: server.url, prepared: await prepared[s].catch((e) => ({ error: e })) };
      const state = mod.setup ? await mod.setup(suiteContext) : {};
      try {
        for (const check of mod.checks ?? []) {
          if (filter && !check.name.includes(filter)) continue;
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
            console.log(`ok - ${check.name} (${seconds(Date.now() - t)})`);
          } catch (e) {
            failed++;
            console.log(`not ok - ${check.name} (${seconds(Date.now() - t)}): ${(e?.stack ?? String(e)).split('\n').slice(0, 4).join('\n    ')}`);
            if (state.page) await state.page.screenshot({ path: join(screenshotDir, `failed-${check.name.replace(/\W+/g, '-').slice(0, 60)}.png`) }).catch(() => {});
          } finally {
            clearTimeout(timer);
          }
        }
      } finally {
        if (mod.teardown) await mod.teardown(state).catch(() => {});
      }
      console.log(`# ${file} done`);
    }
  } finally {
    await browser.close();
    await server.close();
  }
  console.log(`# total ${seconds(Date.now() - started)}; screenshots in ${screenshotDir}`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main().catch((e) => {
  console.error(e);
  console.log('0 passed, 1 failed');
  return 1;
});
