/** Installs navigator.gpu in Node from the `webgpu` package (Dawn). See shared notes: keep `create()`'s
 * result referenced from a global, or it is garbage-collected and the process crashes. */
export async function installNodeWebGpu(): Promise<void> {
  const g = globalThis as unknown as { navigator?: { gpu?: unknown }; __prunelabGpu?: unknown };
  if (g.navigator?.gpu) return;
  const { create, globals } = (await import('webgpu')) as unknown as { create: (flags: string[]) => unknown; globals: object };
  Object.assign(globalThis, globals);
  g.__prunelabGpu = create([]);
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, writable: true, configurable: true });
  Object.defineProperty(g.navigator as object, 'gpu', { value: g.__prunelabGpu, writable: true, configurable: true });
}
