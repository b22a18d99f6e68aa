// Writes PruneLab's pruned export (the removal golden's blocks) of every tests/fixtures-hf checkpoint to <out>/<name>;
// check_pruned_exports.sh then loads each in transformers and compares with the golden.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '../../src/engine/model.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
const base = join(import.meta.dirname, '..', '..', 'tests', 'fixtures-hf');
const outRoot = process.argv[2] ?? '/tmp/prunelab-exports';
for (const name of readdirSync(base)) {
  const golden = JSON.parse(readFileSync(join(base, name, 'golden.json'), 'utf8'));
  const model = await Model.load(directorySource(join(base, name)), 'cpu');
  await model.checkpoint.makeResident();
  const { files } = prunedCheckpointFiles(model.checkpoint, golden.removal.removed);
  const out = join(outRoot, name);
  mkdirSync(out, { recursive: true });
  for (const [f, b] of files) writeFileSync(join(out, f), b);
}
