import { InputError } from '../core/errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/g;

/** `30m`, `1h30m`, `7d`, `500ms` → milliseconds. Throws InputError on anything else. */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$/.test(trimmed)) {
    throw new InputError(`Invalid duration ${JSON.stringify(text)}`, { hint: 'Use a number and a unit: 500ms, 30s, 10m, 1h30m, 7d.' });
  }
  let total = 0;
  for (const match of trimmed.matchAll(PART)) total += Number(match[1]) * UNIT_MS[match[2]!]!;
  return Math.round(total);
}
