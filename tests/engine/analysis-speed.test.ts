import { join } from 'node:path';
import { expect, it } from 'vitest';
import { decodeSpeedAlong } from '../../src/analysis/speed.ts';
import type { Backend } from '../../src/engine/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR } from './fixtures.ts';

it('decode speed along an order: k = 0 … L−1 removes the first k blocks and reports the median decode-forward time', async () => {
  const model = await Model.load(directorySource(join(FIXTURES_DIR, 'llama-gqa')), 'cpu');
  // A clock that charges 10 ms per active block for one-token forwards and 1000 ms for the prompt pass,
  // so the expected times are known exactly.
  const timed = (onForward: (ms: number) => void) => {
    const backend: Backend = {
      info: model.backend.info,
      createCache: (capacity, plan) => model.backend.createCache(capacity, plan),
      dispose: () => {},
      forward: async (request) => {
        const result = await model.backend.forward(request);
        onForward(request.ids.length > 1 ? 1000 : request.plan.blocks.length * 10);
        return result;
      },
    };
    return new Model(model.checkpoint, backend);
  };
  const seen: number[] = [];
  const points = await decodeSpeedAlong(timed, 4, [2, 0, 3, 1], [1, 2, 3], { tokens: 3, rounds: 2, onPoint: (p) => seen.push(p.k) });
  expect(points.map((p) => p.removed)).toEqual([[], [2], [0, 2], [0, 2, 3]]);
  expect(points.map((p) => p.msPerToken)).toEqual([40, 30, 20, 10]);
  expect(points.map((p) => p.tokensPerSecond)).toEqual([25, 1000 / 30, 50, 100]);
  expect(seen).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
});
