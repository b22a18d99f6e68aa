/**
 * Hub models in the lab: the id being considered, its file listing (sizes before any download), and the
 * models already in the Cache API. Listing and the cache run here on the page (small requests; the Cache
 * API is shared with the worker, which downloads and stores the weights through hubModelSource), so they
 * answer at once even while the worker computes. Failures become one clear notice.
 */
import { describeError } from '../../engine/errors.ts';
import { type CachedModel, deleteCachedModel as deleteFromCache, type HubListing, listCachedModels, listHubFiles, modelCacheName, resolveHubCommit } from '../../engine/hub.ts';
import { parseHubId } from '../../engine/sources.ts';
import { notify } from '../state.svelte.ts';

/** A hub listing; `method: 'cache'` when the hub was unreachable and the sizes come from the cache. */
export interface HubListingResult extends Omit<HubListing, 'method'> {
  method: HubListing['method'] | 'cache';
  /** Already in the Cache API: loading it downloads nothing. */
  cached: boolean;
  /** A link's commit was listed: where its revision points now (null: unknown, or the same commit). */
  headCommit?: string | null;
}

/** Where a remembered access token is kept (only when the person ticks "remember"). */
const TOKEN_KEY = 'prunelab.hf-token';

function rememberedToken(): string {
  try {
    return globalThis.localStorage?.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

class HubState {
  /** The id typed in the hub field (owner/name or owner/name@revision). */
  id = $state('');
  /** The listing of `listedId`, waiting for the person to confirm the download. */
  listing = $state.raw<HubListingResult | null>(null);
  listedId = $state('');
  checking = $state(false);
  /** A short line under the field when listing failed. */
  error = $state<string | null>(null);
  cached = $state.raw<CachedModel[]>([]);
  /**
   * A Hugging Face access token for gated repositories: sent to huggingface.co only, never put in a link or an
   * export; kept in this browser's localStorage only when `rememberToken` is ticked, else for this page only.
   */
  token = $state(rememberedToken());
  rememberToken = $state(rememberedToken() !== '');
}

export const hub = new HubState();

/** Sets the access token; "remember" keeps it in localStorage, unticking forgets it there. */
export function setHubToken(token: string, remember: boolean): void {
  hub.token = token.trim();
  hub.rememberToken = remember;
  try {
    if (remember && hub.token) localStorage.setItem(TOKEN_KEY, hub.token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage blocked: the token lasts for this page
  }
}

/** The first 7 hex digits, as git shows a commit. */
export const shortCommit = (sha: string) => sha.slice(0, 7);

/** `owner/name@main` and `owner/name` are the same checkpoint. */
export function sameHubId(a: string, b: string): boolean {
  try {
    const x = parseHubId(a);
    const y = parseHubId(b);
    return x.repo === y.repo && x.revision === y.revision;
  } catch {
    return false;
  }
}

/** The error text from the worker, said the way a person needs it. */
export function explainHubError(message: string): { message: string; hint: string } {
  if (/request failed|failed to fetch|networkerror|load failed|network/i.test(message)) {
    return {
      message: 'huggingface.co could not be reached from this page (offline, blocked by the network, or a CORS failure).',
      hint: 'Load the built-in model, a local folder (Choose folder…) or a cached model instead; a model already loaded stays loaded.',
    };
  }
  if (/refusing to download/.test(message)) return { message, hint: 'Only huggingface.co and this site are fetched from.' };
  if (/not a hub id/.test(message)) return { message, hint: 'Write it as on huggingface.co: owner/name, optionally @revision.' };
  if (/gated|access token/.test(message)) {
    return { message, hint: 'Make a read token at huggingface.co/settings/tokens and paste it under "Access token" (it is sent to huggingface.co only, never put in a link).' };
  }
  return { message, hint: 'Check the id (owner/name, as on huggingface.co); gated models such as Llama need a token the page does not have. A model already loaded stays loaded.' };
}

async function cachedEntry(id: string): Promise<CachedModel | null> {
  try {
    const name = modelCacheName(id);
    return (await listCachedModels()).find((m) => `prunelab-model:${m.id}` === name) ?? null;
  } catch {
    return null;
  }
}

/**
 * The files a checkpoint needs and their sizes, at the commit its revision points at (or at `pinned`, a link's
 * commit); offline, a cached checkpoint's sizes come from the cache.
 */
async function listing(id: string, signal: AbortSignal, pinned?: string): Promise<HubListingResult> {
  const token = hub.token || null;
  const { repo, revision } = parseHubId(id);
  try {
    const found = await listHubFiles(pinned ? `${repo}@${pinned}` : id, { signal, token });
    const commit = found.commit;
    const headCommit = pinned ? await resolveHubCommit(id, { signal, token }).catch(() => null) : null;
    const cached = (commit && (await cachedEntry(`${repo}@${commit}`))) || (await cachedEntry(id));
    return { ...found, revision, cached: cached !== null, headCommit: headCommit !== commit ? headCommit : null };
  } catch (e) {
    const cached = (pinned && (await cachedEntry(`${repo}@${pinned}`))) || (await cachedEntry(id));
    if (!cached || (e as Error)?.name === 'AbortError') throw e;
    return { repo, revision, files: cached.files, totalBytes: cached.totalBytes, method: 'cache', cached: true, commit: pinned ?? null };
  }
}

let listingController: AbortController | null = null;

/**
 * Lists the files of `id` and their sizes (nothing large is downloaded); the panel then asks to confirm.
 * `pinned`: a link's commit, listed (and later loaded) instead of where the revision points now.
 */
export async function checkHubModel(id: string, pinned?: string): Promise<HubListingResult | null> {
  const wanted = id.trim();
  listingController?.abort();
  hub.id = wanted;
  hub.listing = null;
  hub.error = null;
  hub.listedId = wanted;
  if (!wanted) return null;
  const controller = new AbortController();
  listingController = controller;
  hub.checking = true;
  try {
    const result = await listing(wanted, controller.signal, pinned);
    if (listingController !== controller) return null;
    hub.listing = result;
    if (pinned && result.headCommit) {
      notify(
        'warning',
        `${result.repo} has changed since the link was made`,
        `The link was scored on commit ${shortCommit(pinned)}; ${result.revision} now points at ${shortCommit(result.headCommit)}. The lab loads the link's commit, so the numbers are the link's.`,
        `To score the newest weights, load ${result.repo}@${result.revision} from the Model panel.`,
      );
    }
    return result;
  } catch (e) {
    if (listingController !== controller || (e as Error)?.name === 'AbortError') return null;
    const detail = describeError(e);
    const { message, hint } = explainHubError(detail);
    hub.error = message;
    notify('error', `Could not load ${wanted}`, message === detail ? message : `${message} (${detail})`, hint);
    return null;
  } finally {
    if (listingController === controller) {
      hub.checking = false;
      listingController = null;
    }
  }
}

export function cancelHubCheck(): void {
  listingController?.abort();
  listingController = null;
  hub.listedId = '';
  hub.checking = false;
  hub.listing = null;
}

export function dismissListing(): void {
  hub.listing = null;
  hub.listedId = '';
}

let cacheListings = 0;

export async function refreshCachedModels(): Promise<void> {
  // Only the latest listing is shown: an older one that answers late would bring back a deleted model.
  const mine = ++cacheListings;
  try {
    const cached = await listCachedModels();
    if (mine === cacheListings) hub.cached = cached;
  } catch (e) {
    if (mine === cacheListings) hub.cached = [];
    console.warn('PruneLab: could not list the cached models:', e);
  }
}

export async function deleteCachedModel(id: string): Promise<void> {
  try {
    await deleteFromCache(id);
  } catch (e) {
    notify('error', `Could not delete ${id} from the cache`, describeError(e));
  }
  if (hub.listing && sameHubId(`${hub.listing.repo}@${hub.listing.revision}`, id)) hub.listing = { ...hub.listing, cached: false };
  await refreshCachedModels();
}

/** Total bytes of the weight files in a listing (what the load progress counts). */
export function weightBytes(listing: HubListingResult): number {
  return listing.files.filter((f) => f.path.endsWith('.safetensors')).reduce((a, f) => a + f.size, 0);
}
