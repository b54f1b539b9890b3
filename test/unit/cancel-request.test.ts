// What a cancel request keeps of a person's reason, and how the record names who cancelled.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CANCEL_REASON, cancelFields, cancelMessage, cancelledByToken, cleanCancelReason } from '../../src/core/cancel-request.js';
import { createTokenCheck } from '../../src/server/api-auth.js';

describe('cancel requests', () => {
  it('a reason is kept as one line of at most MAX_CANCEL_REASON characters, without control characters', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (reason) => {
        const kept = cleanCancelReason(reason);
        if (kept === undefined) return;
        expect(kept.length).toBeLessThanOrEqual(MAX_CANCEL_REASON);
        expect(kept).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
        expect(kept).toBe(kept.trim());
      }),
    );
    expect(cleanCancelReason('  wrong\r\nbranch\u001b[31m ')).toBe('wrong branch [31m');
    expect(cleanCancelReason(' \n ')).toBeUndefined();
    expect(cleanCancelReason(42)).toBeUndefined();
  });

  it('names the token by its position in server.apiTokens, never by its value', () => {
    const tokens = ['first-token-0123456789', 'second-token-0123456789', 'third-token-0123456789'];
    const check = createTokenCheck(tokens);
    tokens.forEach((token, i) => {
      const result = check(`Bearer ${token}`);
      expect(result).toEqual({ ok: true, position: i + 1 });
      const by = cancelledByToken((result as { position: number }).position);
      expect(by).toBe(`api:token#${i + 1}`);
      expect(by).not.toContain(token);
    });
    expect(check('Bearer nope-nope-nope-nope').ok).toBe(false);
    expect(cancelMessage({ by: 'api:token#2', reason: 'wrong branch' })).toBe('Cancelled by api:token#2: wrong branch');
    expect(cancelFields({ by: 'api:token#2' })).toEqual({ cancelledBy: 'api:token#2' });
  });
});
