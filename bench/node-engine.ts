/**
 * One engine benchmark in its own Node process (run by bench/run.mjs):
 *   node --import tsx bench/node-engine.ts '<json: { dir, config }>'
 * For the WebGPU backend the process must start with the SwiftShader ICD in its environment (run.mjs
 * sets it). Prints progress to stderr and one line `RESULT <json>` to stdout.
 */
import { directorySource } from '../src/engine/sources.ts';
import { nodeWebGpuProblem, uninstallNodeWebGpu } from '../src/engine/webgpu/node.ts';
import { type EngineBenchConfig, runEngineBench } from './engine-bench.ts';
import { type GpuMeter, meterGpu } from './gpu-meter.ts';

async function main(): Promise<number> {
  const { dir, config } = JSON.parse(process.argv[2] ?? '{}') as { dir: string; config: EngineBenchConfig };
  let gpu: GPU | undefined;
  let meter: GpuMeter | undefined;
  if (config.backend === 'webgpu') {
    const problem = await nodeWebGpuProblem();
    if (problem) {
      console.log(`RESULT ${JSON.stringify({ error: `no WebGPU in Node: ${problem}` })}`);
      return 0;
    }
    ({ gpu, meter } = meterGpu((globalThis as unknown as { navigator: { gpu: GPU } }).navigator.gpu));
  }
  try {
    const result = await runEngineBench(config, { source: directorySource(dir), gpu, meter, log: (line) => console.error(`  [${config.backend}] ${line}`) });
    console.log(`RESULT ${JSON.stringify(result)}`);
  } catch (e) {
    console.log(`RESULT ${JSON.stringify({ error: (e as Error).message ?? String(e) })}`);
  } finally {
    if (config.backend === 'webgpu') uninstallNodeWebGpu();
  }
  return 0;
}

// Exit explicitly: a live Dawn instance keeps Node running otherwise.
process.exit(await main());
