/** `prunelab prune`: writes a checkpoint with whole blocks removed. */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PruneLabError } from '../../src/engine/errors.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, modelFlag, openModel, removalFrom, removalPlan } from '../common.ts';

/** Writing into a folder that holds files would mix two checkpoints (or overwrite the source). */
export async function checkEmptyFolder(dest: string): Promise<void> {
  const entries = await readdir(dest).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw new PruneLabError(`--out ${dest} cannot be used (${e.message})`);
  });
  if (entries.length > 0)
    throw new PruneLabError(`--out ${dest} already holds files (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}); choose a new or empty folder`);
}

export const prune: Command = {
  name: 'prune',
  summary: 'Writes an HF checkpoint with whole blocks removed (blocks renumbered, config updated).',
  synopsis: '--model <dir> --remove 3,5,7 --out <dir> [--json]',
  flags: [
    ...COMMON_FLAGS,
    { name: 'remove', value: '3,5,7', help: 'whole blocks to remove (original indices)' },
    { name: 'out', value: '<dir>', help: 'a new or empty folder for the pruned checkpoint' },
  ],
  async run(flags, out) {
    const dest = flags.str('out');
    if (dest === undefined) throw new PruneLabError('prune needs --out <dir>');
    const { blocks: removed } = removalFrom(flags);
    if (removed.length === 0) throw new PruneLabError('prune needs --remove with at least one block');
    await checkEmptyFolder(dest);
    const model = await openModel(flags, out.warn);
    try {
      removalPlan(model.spec.layers, { blocks: removed });
      // The stored bytes of every block (a streamed model, or the fast CPU backend's, keeps none of them).
      await model.checkpoint.makeResident();
      const { files, keptBlocks } = prunedCheckpointFiles(model.checkpoint, removed, { prunelab_removed_blocks: removed.join(',') });
      await mkdir(dest, { recursive: true });
      for (const [name, bytes] of files) await writeFile(join(dest, name), bytes);
      const genConfig = await directorySource(modelFlag(flags)).read('generation_config.json');
      if (genConfig) await writeFile(join(dest, 'generation_config.json'), genConfig);
      if (out.json) out.print(JSON.stringify({ out: dest, removed: [...removed].sort((a, b) => a - b), keptBlocks }));
      else out.print(`wrote ${dest}: ${keptBlocks.length} blocks kept (original ${keptBlocks.join(', ')})`);
    } finally {
      model.dispose();
    }
  },
};
