import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Command, parseFlags } from '../../cli/args.ts';
import { exportCommandWith } from '../../cli/commands/export.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
import { type HandoffPlan, keptRanges, mergekitConfig, storageDtype, transformersScript } from '../../src/export/handoff.ts';
import { FIXTURES_DIR, HF_FIXTURES_DIR } from '../engine/fixtures.ts';

const COMMIT = '0123456789abcdef0123456789abcdef01234567';

function plan(layers: number, removed: number[], extra: Partial<HandoffPlan> = {}): HandoffPlan {
  const configChanges = { num_hidden_layers: layers - removed.length };
  return { source: { kind: 'hub', repo: 'someorg/tiny', revision: 'main', commit: COMMIT }, layers, removed, configChanges, dtypes: ['BF16'], version: '9.9.9', ...extra };
}

/** The original block indices a mergekit config's slices take, read from its layer_range lines. */
function slicedBlocks(yaml: string): number[] {
  const blocks: number[] = [];
  for (const m of yaml.matchAll(/^ {8}layer_range: \[(\d+), (\d+)\]$/gm)) {
    const [start, end] = [Number(m[1]), Number(m[2])];
    expect(end).toBeGreaterThan(start);
    for (let i = start; i < end; i++) blocks.push(i);
  }
  return blocks;
}

/** A deterministic pseudo-random removal of k of n blocks. */
function someRemoval(n: number, k: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.slice(0, k);
}

/** A Python literal of the script (`NAME = ...`, as pyLiteral writes it), as a JS value. */
function pyValue(script: string, name: string): unknown {
  const m = new RegExp(`^${name} = (.*)$`, 'm').exec(script);
  expect(m, `${name} = ... in the script`).not.toBeNull();
  const json = (m as RegExpExecArray)[1].replace(/"(?:[^"\\]|\\.)*"|True|False|None/g, (t) => (t === 'True' ? 'true' : t === 'False' ? 'false' : t === 'None' ? 'null' : t));
  return JSON.parse(json);
}

/** A Python list literal of the script (`NAME = [..]`), as JSON. */
function pyList(script: string, name: string): unknown {
  const m = new RegExp(`^${name} = (\\[.*\\])$`, 'm').exec(script);
  expect(m, `${name} = [...] in the script`).not.toBeNull();
  return JSON.parse((m as RegExpExecArray)[1]);
}

describe('mergekit hand-off', () => {
  it('its slices take exactly the kept blocks, in order, each once (many removals, edges included)', () => {
    const cases: [number, number[]][] = [
      [12, [3, 5, 7]],
      [12, []],
      [12, [0]],
      [12, [11]],
      [12, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
      [32, [24, 25, 26, 27, 28]],
    ];
    for (let seed = 1; seed <= 20; seed++) cases.push([28, someRemoval(28, seed % 27, seed)]);
    for (const [layers, removed] of cases) {
      const yaml = mergekitConfig(plan(layers, removed));
      const expected = Array.from({ length: layers }, (_, i) => i).filter((i) => !removed.includes(i));
      expect(slicedBlocks(yaml)).toEqual(expected);
      // contiguous runs: one slice per maximal run, never two adjacent slices that could be one
      const runs = keptRanges(layers, removed);
      for (let r = 1; r < runs.length; r++) expect(runs[r][0]).toBeGreaterThan(runs[r - 1][1]);
      expect(yaml.match(/^ {2}- sources:$/gm)?.length).toBe(runs.length);
    }
  });

  it('names the source at its commit, passthrough, and the checkpoint dtype (16-bit wins over F32 norms)', () => {
    const yaml = mergekitConfig(plan(12, [3, 5, 7], { dtypes: ['BF16', 'F32'] }));
    expect(yaml).toContain(`      - model: "someorg/tiny@${COMMIT}"\n`);
    expect(yaml).toMatch(/^merge_method: passthrough$/m);
    expect(yaml).toMatch(/^dtype: bfloat16$/m);
    expect(mergekitConfig(plan(4, [1], { dtypes: ['F16'] }))).toMatch(/^dtype: float16$/m);
    expect(mergekitConfig(plan(4, [1], { dtypes: ['F32'] }))).toMatch(/^dtype: float32$/m);
    expect(storageDtype(['F32', 'F16'])).toBe('float16');
    // a revision that was not resolved is named as given
    const unresolved = mergekitConfig(plan(4, [1], { source: { kind: 'hub', repo: 'a/b', revision: 'v2' } }));
    expect(unresolved).toContain('- model: "a/b@v2"');
    expect(unresolved).toContain('not resolved to a commit');
  });

  it('a folder the page cannot name becomes a placeholder the header tells the user to replace', () => {
    const yaml = mergekitConfig(plan(4, [2], { source: { kind: 'path', path: null, label: 'my-model' } }));
    expect(yaml).toContain('- model: "./my-model"');
    expect(yaml).toMatch(/^# Replace \.\/my-model below/m);
  });

  it('refuses removals that do not fit the model, naming the block', () => {
    expect(() => mergekitConfig(plan(12, [12]))).toThrow(/block 12 does not exist \(0\.\.11\)/);
    expect(() => mergekitConfig(plan(2, [0, 1]))).toThrow(/cannot remove every block/);
    expect(() => transformersScript(plan(12, [-1]))).toThrow(/block -1 does not exist/);
    expect(() => mergekitConfig(plan(4, [1], { dtypes: ['I64'] }))).toThrow(/no float weights/);
  });
});

describe('transformers hand-off script', () => {
  it('carries the removal, the kept blocks, the per-layer config keys of PruneLab’s export, the commit and the header', () => {
    const script = transformersScript(plan(12, [7, 3, 5], { chosenBy: { metric: 'angular', calibration: 'moby-dick,\n16 × 128 tokens', link: 'https://x/#v1.abc' } }));
    expect(pyList(script, 'REMOVED')).toEqual([3, 5, 7]);
    expect(pyList(script, 'KEPT')).toEqual([0, 1, 2, 4, 6, 8, 9, 10, 11]);
    expect(script).toMatch(/^LAYERS = 12$/m);
    expect(script).toMatch(/^MODEL = "someorg\/tiny" /m);
    expect(script).toMatch(new RegExp(`^REVISION = "${COMMIT}" `, 'm'));
    expect(script).toMatch(/^STORED_DTYPE = "bfloat16"$/m);
    expect(script).toMatch(/^# PruneLab 9\.9\.9 hand-off: someorg\/tiny with blocks 3, 5, 7 removed \(9 of 12 kept\)\.$/m);
    expect(script).toMatch(/^# Chosen by: Angular distance \(angular\), lowest first; calibration: moby-dick, 16 × 128 tokens\.$/m);
    expect(script).toContain(`# Weights: someorg/tiny at commit ${COMMIT} (revision "main" when scored).`);
    expect(script).toMatch(/^# Experiment: https:\/\/x\/#v1\.abc$/m);
    expect(pyValue(script, 'CONFIG_CHANGES')).toEqual({ num_hidden_layers: 9 });
    expect(script).toContain('os.environ.get("HF_TOKEN")');
    expect(script).toContain('device_map');
    // every comment line stays a comment: a newline in the calibration label cannot break out of it
    const beforeImports = script.slice(0, script.indexOf('import argparse')).trimEnd().split('\n');
    for (const line of beforeImports) expect(line.startsWith('#')).toBe(true);
  });

  it('a folder source has no revision; one the exporter cannot name makes --model required', () => {
    const folder = transformersScript(plan(4, [1], { source: { kind: 'path', path: '/models/x', label: 'x' } }));
    expect(folder).toMatch(/^MODEL = "\/models\/x" /m);
    expect(folder).toMatch(/^REVISION = None /m);
    const unnamed = transformersScript(plan(4, [1], { source: { kind: 'path', path: null, label: 'x' } }));
    expect(unnamed).toMatch(/^MODEL = None /m);
    expect(unnamed).toContain('required=MODEL is None');
  });
});

describe('transformers hand-off script: the config keys it sets', () => {
  const folders = [...readdirSync(FIXTURES_DIR).map((f) => join(FIXTURES_DIR, f)), ...readdirSync(HF_FIXTURES_DIR).map((f) => join(HF_FIXTURES_DIR, f))].filter((d) =>
    existsSync(join(d, 'config.json')),
  );

  it.each(folders.map((d) => [d.split('/').slice(-2).join('/'), d]))(
    '%s: the original config.json with CONFIG_CHANGES applied is the config.json PruneLab’s export writes',
    async (_name, dir) => {
      const checkpoint = await loadCheckpoint(directorySource(dir));
      const layers = checkpoint.spec.layers;
      // every other block but one: both per-layer kinds of an alternating pattern are cut
      const removed = Array.from({ length: layers }, (_, i) => i).filter((i) => i % 2 === 1 && i < layers - 1);
      if (removed.length === 0) removed.push(0);
      const command: Command = exportCommandWith({});
      const lines: string[] = [];
      await command.run(parseFlags(command, ['--model', dir, '--remove', removed.join(','), '--format', 'transformers'], [command]), {
        json: false,
        print: (t) => lines.push(t),
        warn: () => {},
      });
      const changes = pyValue(lines.join('\n'), 'CONFIG_CHANGES') as Record<string, unknown>;
      const exported = JSON.parse(new TextDecoder().decode(prunedCheckpointFiles(checkpoint, removed).files.get('config.json')));
      expect({ ...checkpoint.config, ...changes }).toEqual(exported);
      expect(Object.keys(changes).length).toBeGreaterThan(0);
    },
  );
});

describe('prunelab export (the command, reading only config and safetensors headers)', () => {
  async function runExport(args: string[]): Promise<string> {
    const command: Command = exportCommandWith({});
    const lines: string[] = [];
    await command.run(parseFlags(command, args, [command]), { json: false, print: (t) => lines.push(t), warn: () => {} });
    return lines.join('\n');
  }

  it('takes the layer count from config.json and the dtype from the (sharded) headers', async () => {
    const yaml = await runExport(['--model', join(FIXTURES_DIR, 'qwen3-qknorm'), '--remove', '1', '--format', 'mergekit']);
    expect(slicedBlocks(yaml)).toEqual([0, 2, 3]);
    expect(yaml).toMatch(/^dtype: float32$/m);
    const bf16 = await runExport(['--model', join(FIXTURES_DIR, 'llama3-rope'), '--remove', '0', '--format', 'transformers', '--metric', 'relmag']);
    expect(bf16).toMatch(/^STORED_DTYPE = "bfloat16"$/m);
    expect(bf16).toContain('Relative magnitude (relMagnitude)');
  });

  it('names the bad flag value', async () => {
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    await expect(runExport(['--model', dir, '--remove', '1', '--format', 'onnx'])).rejects.toThrow(/--format must be transformers or mergekit, got "onnx"/);
    await expect(runExport(['--model', dir, '--format', 'mergekit'])).rejects.toThrow(/export needs --remove/);
    await expect(runExport(['--model', dir, '--remove', '9', '--format', 'mergekit'])).rejects.toThrow(/field remove: block 9 does not exist \(0\.\.3\)/);
    await expect(runExport(['--model', dir, '--remove', '1', '--format', 'mergekit', '--metric', 'cos'])).rejects.toThrow(/--metric must be bi, angular or relmag/);
    await expect(runExport(['--model', '/nonexistent/model', '--remove', '1', '--format', 'mergekit'])).rejects.toThrow(/\/nonexistent\/model/);
  });
});
