/**
 * The bench page for our engine in Chromium: the same runEngineBench as in Node, reading the model over
 * HTTP from /models/<name>/ and acquiring its device through the metered navigator.gpu. bench/run.mjs
 * calls window.runEngineBench(name, config) with playwright and reads back the result.
 */
import { urlSource } from '../../src/engine/sources.ts';
import { type EngineBenchConfig, runEngineBench } from '../engine-bench.ts';
import { meterGpu } from '../gpu-meter.ts';

async function benchInPage(name: string, config: EngineBenchConfig): Promise<Record<string, unknown>> {
  let gpu: GPU | undefined;
  let meter: ReturnType<typeof meterGpu>['meter'] | undefined;
  if (config.backend === 'webgpu') {
    if (!navigator.gpu) return { error: 'no navigator.gpu in this page' };
    ({ gpu, meter } = meterGpu(navigator.gpu));
  }
  const source = urlSource(new URL(`/models/${name}/`, location.href).href, name);
  return runEngineBench(config, { source, gpu, meter, log: (line) => console.log(`[engine] ${line}`) });
}

(globalThis as unknown as { runEngineBench: typeof benchInPage }).runEngineBench = benchInPage;
(globalThis as unknown as { benchReady: boolean }).benchReady = true;
