import { defineConfig } from 'vitest/config';

// Integration and end-to-end tests run real toolchains (buildah, Maven, .NET, NATS): generous
// timeouts, and at most two test files at once on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
