/** Why a browser runs onnxruntime-web single-threaded, or null when WebAssembly threads are available. */
export function browserThreadLimit(): string | null {
  if (typeof SharedArrayBuffer === 'undefined' || !(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated) {
    return 'single-threaded: the page is not cross-origin isolated (the server sends no COOP/COEP headers), so WebAssembly threads are off';
  }
  return null;
}
