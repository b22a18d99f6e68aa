/** The page's handle on the engine worker (comlink). The only place that creates the worker. */
import * as Comlink from 'comlink';
import type { EngineApi } from '../worker-api.ts';

const worker = new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'prunelab-engine' });

export const engine: Comlink.Remote<EngineApi> = Comlink.wrap<EngineApi>(worker);

/** Errors that escape the worker's own handling (a crash, a failed module load). */
export function onWorkerError(listener: (message: string) => void): void {
  worker.addEventListener('error', (event) => listener(event.message || 'the engine worker failed to start'));
  worker.addEventListener('messageerror', () => listener('a message from the engine worker could not be read'));
}

export const proxy = Comlink.proxy;
