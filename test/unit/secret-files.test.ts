// Key material oci-build reads itself — the GitHub App's private key, a NATS credentials file or
// NKey seed, the NATS client key — is hidden from every build's sandbox, and what a NATS
// credentials file holds is masked wherever oci-build writes.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { sandboxHiddenPaths } from '../../src/compose.js';
import { maskSecrets } from '../../src/core/secrets.js';
import { authenticationOf } from '../../src/queue/nats.js';

const JWT = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJURVNUIn0.c2lnbmF0dXJlLWZvci10ZXN0cw';
const SEED = 'SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4';
const CREDS = `-----BEGIN NATS USER JWT-----
${JWT}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.

-----BEGIN USER NKEY SEED-----
${SEED}
------END USER NKEY SEED------
`;

describe('secret files', () => {
  it('hides the GitHub App key, the NATS credentials, seed and client key from builds', () => {
    const config = parseConfig({
      home: '/home/op',
      env: {
        OCI_BUILD_GITHUB_APP_ID: '1',
        OCI_BUILD_GITHUB_PRIVATE_KEY_FILE: '/etc/oci-build/app.pem',
        OCI_BUILD_NATS_CREDS_FILE: '/etc/oci-build/nats.creds',
        OCI_BUILD_NATS_TLS_CERT: '/etc/oci-build/client.pem',
        OCI_BUILD_NATS_TLS_KEY: '/etc/oci-build/client-key.pem',
      },
    });
    const hidden = sandboxHiddenPaths(config, { HOME: '/home/op' });
    expect(hidden).toEqual(expect.arrayContaining(['/etc/oci-build/app.pem', '/etc/oci-build/nats.creds', '/etc/oci-build/client-key.pem']));
    const seeded = parseConfig({ home: '/home/op', env: { OCI_BUILD_NATS_NKEY_SEED_FILE: '/etc/oci-build/nats.nk' } });
    expect(sandboxHiddenPaths(seeded, { HOME: '/home/op' })).toContain('/etc/oci-build/nats.nk');
  });

  it("masks a credentials file's JWT and seed once it is read, and not its banner", () => {
    const dir = mkdtempSync(join(tmpdir(), 'oci-build-creds-'));
    const file = join(dir, 'user.creds');
    writeFileSync(file, CREDS);
    expect(maskSecrets(`jwt ${JWT} seed ${SEED}`)).toContain(SEED);
    const options = authenticationOf({ ...parseConfig({ home: '/home/op' }).nats, credsFile: file });
    expect(options.authenticator).toBeTypeOf('function');
    expect(maskSecrets(`jwt ${JWT} seed ${SEED}`)).toBe('jwt *** seed ***');
    expect(maskSecrets('NKEY Seed printed below can be used to sign and prove identity.')).toBe('NKEY Seed printed below can be used to sign and prove identity.');
  });
});
