/** Numbers as the lab shows them. */
import { format } from 'd3';

const siCount = format('.3~s');

/** 2886784 -> "2.89 M", 135000000 -> "135 M". */
export function formatCount(n: number): string {
  return siCount(n)
    .replace(/([0-9.])([kMGT])$/, '$1 $2')
    .replace(/G$/, 'B');
}

/** A block-streamed pass: "block 17 / 32 · 1.2 GB read · 40 s left" (the time from the pace so far). */
export function blockPassText(p: { done: number; total: number; bytesRead: number; elapsedMs: number }): string {
  const left = p.done > 0 && p.done < p.total ? ` · ${Math.ceil(((p.elapsedMs / p.done) * (p.total - p.done)) / 1000)} s left` : '';
  return `block ${p.done} / ${p.total} · ${formatBytes(p.bytesRead)} read${left}`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A metric value, short: 0.821, 0.0115, 7.2e-5. */
export function formatMetric(value: number): string {
  if (!Number.isFinite(value)) return '—';
  if (value !== 0 && Math.abs(value) < 1e-3) return format('.2~e')(value).replace('e-', 'e−');
  return format('.3~r')(value);
}

/** The exact value for tooltips and tables. */
export function formatExact(value: number): string {
  return Number.isFinite(value) ? value.toPrecision(6) : '—';
}

/** A confidence interval, exact enough to see which overlap: "[0.0114, 0.0121]" (`digits` significant digits). */
export function formatInterval(interval: readonly [number, number] | undefined, digits = 4): string {
  if (!interval) return '—';
  return `[${interval.map((v) => (Number.isFinite(v) ? v.toPrecision(digits) : '—')).join(', ')}]`;
}

export function formatPercent(share: number): string {
  return `${(share * 100).toFixed(share > 0 && share < 0.1 ? 1 : 0)}%`;
}

/** A finding's message as a sentence on its own: capital first letter, closing full stop. */
export function asSentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.');
}
