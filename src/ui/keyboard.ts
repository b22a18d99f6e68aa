/**
 * Keyboard helpers installed once for the whole page (main.ts).
 *
 * keepFocusOnSwap: keyboard focus that survives a swapped control. Pressing Enter on Score (or Run sweep, Measure, Load…)
 * replaces the button with Cancel; the focused element leaves the DOM and the browser drops focus to the
 * body, so a keyboard user cannot reach Cancel. This watcher moves focus to the control that took the lost
 * one's place (or, failing that, the nearest focusable control in the same container), for every such
 * swap in the page. It acts only when focus was lost to the body, never when the person moved it.
 */

const FOCUSABLE = 'button, input, select, textarea, a[href], [tabindex]:not([tabindex="-1"])';

function focusableIn(node: Node): HTMLElement | null {
  if (!(node instanceof HTMLElement)) return null;
  const candidates = [node, ...node.querySelectorAll<HTMLElement>(FOCUSABLE)];
  return candidates.find((el) => el.matches(FOCUSABLE) && !(el as HTMLButtonElement).disabled && el.offsetParent !== null) ?? null;
}

function focusLost(): boolean {
  const active = document.activeElement;
  return active === null || active === document.body || active === document.documentElement;
}

/** Starts the watcher (once, for the whole page); returns a function that stops it. */
export function keepFocusOnSwap(root: HTMLElement = document.body): () => void {
  let focused: HTMLElement | null = null;
  /** The containers of the element that lost focus, nearest first, while a replacement may still arrive. */
  let lost: { ancestors: Element[]; until: number } | null = null;

  const onFocusIn = (event: FocusEvent) => {
    focused = event.target instanceof HTMLElement ? event.target : null;
    lost = null;
  };

  const observer = new MutationObserver((records) => {
    if (focused && !focused.isConnected && focusLost() && !lost) {
      const ancestors: Element[] = [];
      const gone = focused;
      for (const r of records) {
        if (r.target instanceof Element && [...r.removedNodes].some((n) => n === gone || n.contains(gone))) ancestors.push(r.target);
      }
      lost = { ancestors, until: performance.now() + 1000 };
      focused = null;
      setTimeout(fallback, 150);
    }
    if (!lost || !focusLost()) return;
    if (performance.now() > lost.until) {
      lost = null;
      return;
    }
    // The control inserted where the lost one was (Cancel for Score, Score again when the run ends) …
    for (const r of records) {
      if (!lost.ancestors.includes(r.target as Element)) continue;
      for (const node of r.addedNodes) {
        const target = focusableIn(node);
        if (target) {
          lost = null;
          target.focus();
          return;
        }
      }
    }
  });

  /** No replacement arrived: the first usable control of the nearest container still on the page. */
  const fallback = () => {
    if (!lost || !focusLost()) return;
    const container = lost.ancestors.find((a) => a.isConnected);
    lost = null;
    (container ? focusableIn(container) : null)?.focus();
  };
  root.addEventListener('focusin', onFocusIn);
  observer.observe(root, { childList: true, subtree: true });
  return () => {
    observer.disconnect();
    root.removeEventListener('focusin', onFocusIn);
  };
}

/**
 * Arrow keys in every `role="radiogroup"` of `role="radio"` buttons (the metric switch and the other
 * segmented switches): Left/Up and Right/Down choose the previous / next option, Home / End the first / last,
 * as the WAI-ARIA radio group pattern asks; the choice is made by clicking it, so the component's own
 * handler runs.
 */
export function radioArrowKeys(root: HTMLElement = document.body): () => void {
  const onKeyDown = (event: KeyboardEvent) => {
    const radio = event.target instanceof HTMLElement ? event.target.closest<HTMLElement>('[role=radio]') : null;
    const group = radio?.closest<HTMLElement>('[role=radiogroup]');
    if (!radio || !group || event.altKey || event.ctrlKey || event.metaKey) return;
    const options = [...group.querySelectorAll<HTMLElement>('[role=radio]')].filter((el) => !(el as HTMLButtonElement).disabled);
    const at = options.indexOf(radio);
    if (at < 0) return;
    const next = { ArrowLeft: at - 1, ArrowUp: at - 1, ArrowRight: at + 1, ArrowDown: at + 1, Home: 0, End: options.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const target = options[(next + options.length) % options.length];
    target.focus();
    target.click();
  };
  root.addEventListener('keydown', onKeyDown);
  return () => root.removeEventListener('keydown', onKeyDown);
}
