/** Every supported family, and the lookups everything else uses (config parsing, binding, export, UI). */
import { PruneLabError } from '../errors.ts';
import type { FamilyDefinition } from './family.ts';
import { gemma2Family, gemma3Family } from './gemma.ts';
import { gpt2Family } from './gpt2.ts';
import { gptNeoxFamily } from './gpt-neox.ts';
import { graniteFamily } from './granite.ts';
import { llamaFamily } from './llama.ts';
import { olmo2Family } from './olmo2.ts';
import { phi3Family } from './phi3.ts';
import { smollm3Family } from './smollm3.ts';

export const FAMILIES: readonly FamilyDefinition[] = [llamaFamily, gpt2Family, gemma2Family, gemma3Family, phi3Family, olmo2Family, graniteFamily, smollm3Family, gptNeoxFamily];

export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.flatMap((f) => f.modelTypes);

export function familyForConfig(cfg: unknown): FamilyDefinition {
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new PruneLabError('must be a JSON object', { file: 'config.json' });
  const modelType = (cfg as Record<string, unknown>).model_type;
  const family = FAMILIES.find((f) => typeof modelType === 'string' && f.modelTypes.includes(modelType));
  if (!family) {
    throw new PruneLabError(`unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, { file: 'config.json', field: 'model_type' });
  }
  return family;
}

export function familyByName(name: string): FamilyDefinition {
  const family = FAMILIES.find((f) => f.name === name);
  if (!family) throw new PruneLabError(`no family named "${name}"`);
  return family;
}
