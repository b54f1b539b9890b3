// Turns a failed buildah command into the typed error the pipeline acts on: a registry that cannot
// be reached is transient (the job is retried), refused credentials and TLS mismatches are not
// (retrying cannot help), and anything else in a build is the repository's own failure.

import type { BackoffPolicy } from '../core/retry.js';
import {
  BuildFailedError,
  ExitCode,
  InputError,
  OciBuildError,
  ServiceUnavailableError,
} from '../core/errors.js';

/**
 * The registry refused the credentials (or has none for us). Not transient: the same job fails
 * the same way until someone fixes the auth file.
 */
export class RegistryAuthError extends OciBuildError {
  override readonly code = 'E_REGISTRY_AUTH';
  override readonly exitCode = ExitCode.Unavailable;
}

/** A push failed for a reason that is neither the network nor the credentials (see the message). */
export class ImagePushError extends OciBuildError {
  override readonly code = 'E_PUSH_FAILED';
}

/** The registry host of an image reference, by the Docker rule: a first component with `.` or `:`, or `localhost`. */
export function registryHostOf(reference: string): string {
  const withoutTransport = reference.replace(/^docker:\/\//, '');
  const first = withoutTransport.split('/')[0] ?? '';
  const isHost = withoutTransport.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return isHost ? first : 'docker.io';
}

/** Whether a repository name names its registry (a push without one would go to Docker Hub). */
export function hasRegistryHost(repository: string): boolean {
  const first = repository.split('/')[0] ?? '';
  return repository.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
}

/** A registry's own failure (5xx), as containers/image words it. */
const REGISTRY_5XX = /invalid status code from registry 5\d\d|unexpected (?:HTTP )?status:? 5\d\d|\b50[0234] \(?(?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)\b/i;
const UNREACHABLE = [
  /connection refused/i,
  /no such host/i,
  /i\/o timeout/i,
  /network is unreachable/i,
  /no route to host/i,
  /connection reset by peer/i,
  /TLS handshake timeout/i,
  /context deadline exceeded/i,
  REGISTRY_5XX,
  /toomanyrequests|429 Too Many Requests/i,
];
const AUTH_REFUSED = [/unauthorized/i, /authentication required/i, /denied: /i, /invalid username\/password/i, /\b40[13] (?:Unauthorized|Forbidden)\b/i];
const TLS_MISMATCH = [/server gave HTTP response to HTTPS client/i, /x509: /i, /tls: /i];
const MANIFEST_UNKNOWN = [/manifest unknown/i, /name unknown/i, /not found: manifest/i];
/** Lines that show the failure concerns a registry rather than a RUN step of the Dockerfile. */
const REGISTRY_CONTEXT = /docker:\/\/|container registry|reading manifest|initializing source|trying to reuse blob|checking whether a blob|writing manifest|uploading|pinging/i;

/**
 * A registry refusing a manifest for a blob it should have while other pushes write the same
 * blobs into the same repository: docker-registry's filesystem driver (distribution 2.8, the
 * registry of these tests and under many Harbors) rewrites a repository's link to a blob by
 * truncating the file first, and a manifest checked in that instant names a blob whose link reads
 * empty ("digest invalid") or is not there yet ("manifest blob unknown"); a blob's HEAD in that
 * instant is a 500 ("failed to read from destination repository"). Seen with several workers
 * building one commit for several branches at once; reproduced here with six concurrent `buildah
 * push` of one image (1 push in ~36 fails so). The same push again finds every blob and writes.
 */
const MANIFEST_REFUSED_FOR_BLOBS = /manifest blob unknown|blob unknown to registry|^digest invalid$/im;

/** Whether a failed push's output is the registry refusing its manifest for blobs it had not linked yet. */
export function isManifestBlobRace(lastLines: readonly string[]): boolean {
  const text = lastLines.join('\n');
  return /writing manifest/i.test(text) && MANIFEST_REFUSED_FOR_BLOBS.test(text);
}

/**
 * Whether a failed push is worth the same push again at once: the registry answered with its own
 * failure (a 5xx) or refused the manifest for blobs it had not linked yet. A registry that cannot
 * be reached, refused credentials or TLS are not: the job's own retry (or the user) handles those.
 */
export function isRegistryWriteCollision(lastLines: readonly string[]): boolean {
  return isManifestBlobRace(lastLines) || lastLines.some((line) => REGISTRY_5XX.test(line));
}

/**
 * How a write the registry refused while others wrote the same content is tried again (a push
 * whose manifest met the race above, a reused image's manifest PUT answered with a 5xx): a few
 * times, quickly, with jitter so that the writers that collided do not collide again.
 */
export const REGISTRY_WRITE_RETRY: BackoffPolicy = { baseMs: 200, maxMs: 2_000, jitter: 0.5 };
export const REGISTRY_WRITE_RETRIES = 4;

/** The registry named in buildah's message, if any. */
function registryInOutput(text: string): string | undefined {
  return (
    /pinging container registry ([^\s:]+(?::\d+)?)/.exec(text)?.[1] ??
    /docker:\/\/([^/\s"]+)\//.exec(text)?.[1] ??
    /exists in ([^/\s"]+)\//.exec(text)?.[1]
  );
}

export interface FailureContext {
  /** What was being done, for the message: `push of 127.0.0.1:5000/app:main`. */
  action: 'build' | 'push';
  /** The reference being pushed, or the repository built. */
  reference: string;
  /** The last lines of the command's output (stdout and stderr, in order). */
  lastLines: string[];
  cause: unknown;
  authFile?: string;
  project?: string;
}

/**
 * Decides what a buildah failure means. For a build, only failures whose last error line talks
 * about a registry (pulling a base image) are treated as registry failures: "permission denied"
 * in a RUN step is the Dockerfile's problem, not the registry's.
 */
export function classifyBuildahFailure(ctx: FailureContext): OciBuildError {
  const lines = ctx.lastLines.filter((l) => l.trim().length > 0);
  const errorLine = [...lines].reverse().find((l) => /^(?:Error|error)[: ]/.test(l.trim())) ?? lines[lines.length - 1] ?? '';
  const tail = lines.slice(-15).join('\n');
  const registryRelated = ctx.action === 'push' || REGISTRY_CONTEXT.test(errorLine);
  const registry = registryInOutput(errorLine) ?? registryHostOf(ctx.reference);
  const options = { cause: ctx.cause, details: { registry, reference: ctx.reference } };
  const what = ctx.action === 'push' ? `Pushing ${ctx.reference}` : `Building the image ${ctx.reference}${ctx.project ? ` (project ${ctx.project})` : ''}`;

  if (registryRelated) {
    if (TLS_MISMATCH.some((p) => p.test(errorLine))) {
      return new InputError(`${what} failed: the registry ${registry} does not speak verified HTTPS:\n${errorLine.trim()}`, {
        ...options,
        hint: `For a plain-HTTP or self-signed registry set image.tlsVerify: false (or pass --no-tls-verify); otherwise install the registry's CA certificate.`,
      });
    }
    if (UNREACHABLE.some((p) => p.test(errorLine))) {
      return new ServiceUnavailableError(`${what} failed: the registry ${registry} is unavailable:\n${errorLine.trim()}`, {
        ...options,
        hint: `Check that the registry ${registry} is running and reachable from this machine (oci-build doctor checks it), then retry the build.`,
      });
    }
    if (AUTH_REFUSED.some((p) => p.test(errorLine))) {
      return new RegistryAuthError(`${what} failed: the registry ${registry} refused the credentials:\n${errorLine.trim()}`, {
        ...options,
        hint: `Check image.authFile (${ctx.authFile ?? "buildah's default, REGISTRY_AUTH_FILE"}) or log in with \`buildah login ${registry}\`, and that the account may ${ctx.action === 'push' ? 'push to' : 'pull from'} this repository.`,
      });
    }
    if (ctx.action === 'build' && MANIFEST_UNKNOWN.some((p) => p.test(errorLine))) {
      return new BuildFailedError(`${what} failed: a base image named in the Dockerfile does not exist in ${registry}:\n${errorLine.trim()}`, {
        ...options,
        hint: 'Check the FROM lines of the Dockerfile, and that the base image was pushed to that registry.',
      });
    }
  }
  if (ctx.action === 'push' && isManifestBlobRace(lines)) {
    return new ImagePushError(`${what} failed: the registry ${registry} refused the image's manifest for blobs it had not linked, each of ${REGISTRY_WRITE_RETRIES + 1} times:\n${tail}`, {
      ...options,
      hint: `Other pushes of the same layers to ${registry} collide with this one (docker-registry's filesystem storage does so): build again; if it persists, check the registry's storage for missing blobs.`,
    });
  }
  if (ctx.action === 'push') {
    return new ImagePushError(`${what} failed:\n${tail}`, { ...options, hint: `Check the registry ${registry} and the output above.` });
  }
  return new BuildFailedError(`${what} failed:\n${tail}`, {
    ...options,
    hint: 'Fix the Dockerfile or the step shown above, then build again.',
  });
}
