// deploy/ against the code: every OCI_BUILD_* name is a configuration key's environment variable
// (derived from the schema), and every port, stream, consumer, grace period and secret the
// manifests name is the one the code uses. Probe paths are checked against a real serve
// (test/integration/metrics-promtool.test.ts) and the compose settings by a real run
// (test/e2e/environment.test.ts).

import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEFAULTS, configLeaves } from '../../src/config/config.js';
import { parseDuration } from '../../src/config/duration.js';
import { DEFAULT_CONSUMER_NAME } from '../../src/core/ports.js';
import { deployFiles, envAssignments, kubernetesObjects, ociBuildNames, readDeployFile, unitKeys } from '../helpers/deploy-files.js';

const ENV_NAMES = new Set(configLeaves().map((leaf) => leaf.env));
/** Stream names are OCI_BUILD_… words too; they are values, not variables. */
const STREAM_NAMES = new Set([DEFAULTS.nats.stream, DEFAULTS.nats.logStream]);

type Container = { name: string; env?: Array<{ name: string; value?: string; valueFrom?: unknown }>; envFrom?: Array<{ secretRef: { name: string } }>; ports?: Array<{ name: string; containerPort: number }>; [key: string]: any };

function k8s(kind: string, name: string): Record<string, any> {
  const all = deployFiles()
    .filter((path) => path.startsWith('kubernetes/') && path !== 'kubernetes/nats-values.yaml')
    .flatMap((path) => kubernetesObjects(path));
  const found = all.find((object) => object.kind === kind && object.metadata?.name === name);
  expect(found, `${kind} ${name} in deploy/kubernetes`).toBeDefined();
  return found!;
}

function container(deployment: Record<string, any>): Container {
  const containers = deployment.spec.template.spec.containers as Container[];
  expect(containers).toHaveLength(1);
  return containers[0]!;
}

function envOf(c: Container): Record<string, string> {
  return Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
}

/** A setting as the process would get it: the manifest's variable, else the config default. */
function setting(env: Record<string, string>, name: string, fallback: string | number): string {
  return env[name] ?? String(fallback);
}

const natsValues = parse(readDeployFile('kubernetes/nats-values.yaml')) as Record<string, any>;
const compose = parse(readDeployFile('compose.yaml'), { merge: true }) as { services: Record<string, any> };

describe('OCI_BUILD_* names in deploy/', () => {
  it('every one in every file is a configuration key environment variable of the schema', () => {
    const seen = new Set<string>();
    for (const path of deployFiles()) {
      for (const name of ociBuildNames(readDeployFile(path))) {
        seen.add(name);
        if (STREAM_NAMES.has(name)) continue;
        expect(ENV_NAMES.has(name), `${name} in deploy/${path} is not the environment variable of any key in schema/oci-build.config.schema.json`).toBe(true);
      }
    }
    // The files do set the essentials (a check that reads nothing would pass too).
    for (const name of ['OCI_BUILD_NATS_URL', 'OCI_BUILD_SERVER_WEBHOOK_SECRET', 'OCI_BUILD_WORK_DIR', 'OCI_BUILD_IMAGE_STORAGE_DRIVER']) expect(seen).toContain(name);
  });

  it('the name rule itself: an unknown name is caught', () => {
    expect(ENV_NAMES.has('OCI_BUILD_NATS_URL')).toBe(true);
    expect(ENV_NAMES.has('OCI_BUILD_NATS_URLS')).toBe(false);
    expect(ociBuildNames('x OCI_BUILD_A_B=1 # OCI_BUILD_C_\n')).toEqual(['OCI_BUILD_A_B', 'OCI_BUILD_C']);
  });
});

describe('deploy/kubernetes', () => {
  const serve = k8s('Deployment', 'oci-build-serve');
  const worker = k8s('Deployment', 'oci-build-worker');
  const serveContainer = container(serve);
  const workerContainer = container(worker);
  const serveEnv = envOf(serveContainer);
  const workerEnv = envOf(workerContainer);

  it('serve listens where its container port, probes and Service point', () => {
    const port = Number(setting(serveEnv, 'OCI_BUILD_SERVER_PORT', DEFAULTS.server.port));
    // The default host is loopback: probes and the Service could not reach it.
    expect(serveEnv.OCI_BUILD_SERVER_HOST).toBe('0.0.0.0');
    const http = serveContainer.ports!.find((p) => p.name === 'http');
    expect(http?.containerPort).toBe(port);
    expect(serveContainer.readinessProbe.httpGet.port).toBe('http');
    expect(serveContainer.livenessProbe.tcpSocket.port).toBe('http');
    expect(serve.spec.template.metadata.annotations['prometheus.io/port']).toBe(String(port));
    const service = k8s('Service', 'oci-build-serve');
    expect(service.spec.ports[0].targetPort).toBe('http');
    expect(service.spec.selector).toEqual(serve.spec.template.metadata.labels);
    expect(serve.spec.selector.matchLabels).toEqual(serve.spec.template.metadata.labels);
  });

  it('serve and the workers reach the NATS the chart values describe', () => {
    const url = new URL(serveEnv.OCI_BUILD_NATS_URL!);
    expect(workerEnv.OCI_BUILD_NATS_URL).toBe(serveEnv.OCI_BUILD_NATS_URL);
    expect(Number(url.port)).toBe(natsValues.config.nats.port);
    expect(url.hostname).toMatch(/^nats\.nats\.svc/);
  });

  it('the NATS chart values: a 3-node JetStream cluster with a persistent file store and monitoring', () => {
    expect(natsValues.config.jetstream.enabled).toBe(true);
    expect(natsValues.config.jetstream.fileStore).toMatchObject({ enabled: true, pvc: { enabled: true } });
    expect(natsValues.config.cluster).toEqual({ enabled: true, replicas: 3 });
    expect(natsValues.config.monitor.enabled).toBe(true);
  });

  it('KEDA scales the workers on their consumer of the job stream', () => {
    const scaled = k8s('ScaledObject', 'oci-build-worker');
    expect(scaled.apiVersion).toBe('keda.sh/v1alpha1');
    expect(scaled.spec.scaleTargetRef.name).toBe(worker.metadata.name);
    const [trigger, ...others] = scaled.spec.triggers as Array<{ type: string; metadata: Record<string, string> }>;
    expect(others).toEqual([]);
    expect(trigger!.type).toBe('nats-jetstream');
    expect(trigger!.metadata.consumer).toBe(DEFAULT_CONSUMER_NAME);
    expect(trigger!.metadata.stream).toBe(setting(workerEnv, 'OCI_BUILD_NATS_STREAM', DEFAULTS.nats.stream));
    expect(trigger!.metadata.account).toBe('$G');
    // One queued or running job per build slot.
    expect(trigger!.metadata.lagThreshold).toBe(setting(workerEnv, 'OCI_BUILD_WORKER_CONCURRENCY', DEFAULTS.worker.concurrency));
    const endpoint = trigger!.metadata.natsServerMonitoringEndpoint!;
    expect(endpoint.endsWith(`:${natsValues.config.monitor.port}`)).toBe(true);
    expect(endpoint).toMatch(/^nats-headless\.nats\.svc/);
    expect(scaled.spec.cooldownPeriod).toBeGreaterThanOrEqual(worker.spec.template.spec.terminationGracePeriodSeconds);
  });

  it('a worker pod outlives its drain, and finds its secrets and registry credentials', () => {
    const graceMs = parseDuration(setting(workerEnv, 'OCI_BUILD_WORKER_SHUTDOWN_GRACE', DEFAULTS.worker.shutdownGrace));
    expect(worker.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(graceMs);
    expect(workerEnv.OCI_BUILD_IMAGE_STORAGE_DRIVER).toBe('vfs');
    expect(workerEnv.OCI_BUILD_IMAGE_ISOLATION).toBe('chroot');
    expect(workerContainer.securityContext.capabilities.add).toEqual(['SYS_ADMIN']);
    expect(workerContainer.securityContext.privileged).toBeUndefined();

    for (const c of [serveContainer, workerContainer]) {
      for (const from of c.envFrom ?? []) k8s('Secret', from.secretRef.name);
    }
    const authFile = workerEnv.OCI_BUILD_IMAGE_AUTH_FILE!;
    const volumes = worker.spec.template.spec.volumes as Array<{ name: string; secret?: { secretName: string; items: Array<{ key: string; path: string }> } }>;
    const mount = (workerContainer.volumeMounts as Array<{ name: string; mountPath: string }>).find((m) => authFile.startsWith(`${m.mountPath}/`));
    const volume = volumes.find((v) => v.name === mount?.name);
    expect(volume?.secret?.items.map((item) => `${mount!.mountPath}/${item.path}`)).toContain(authFile);
    const registrySecret = k8s('Secret', volume!.secret!.secretName);
    expect(Object.keys(registrySecret.stringData)).toContain(volume!.secret!.items[0]!.key);
    // Every directory the worker writes is a volume, not the image's filesystem.
    for (const name of ['OCI_BUILD_WORK_DIR', 'OCI_BUILD_IMAGE_ROOT', 'OCI_BUILD_IMAGE_RUN_ROOT']) {
      expect((workerContainer.volumeMounts as Array<{ mountPath: string }>).some((m) => workerEnv[name]!.startsWith(m.mountPath)), name).toBe(true);
    }
  });

  it('kustomization lists every manifest (NATS comes from its chart)', () => {
    const [kustomization] = kubernetesObjects('kubernetes/kustomization.yaml');
    const manifests = deployFiles()
      .filter((path) => path.startsWith('kubernetes/') && !['kubernetes/kustomization.yaml', 'kubernetes/nats-values.yaml'].includes(path))
      .map((path) => path.slice('kubernetes/'.length));
    expect([...kustomization!.resources].sort()).toEqual(manifests.sort());
    for (const path of manifests) {
      for (const object of kubernetesObjects(`kubernetes/${path}`)) expect(object.kind === 'Namespace' ? object.metadata.name : object.metadata.namespace).toBe(kustomization!.namespace);
    }
  });
});

describe('deploy/compose.yaml', () => {
  const services = compose.services;

  it('NATS with JetStream on a volume, its monitoring port checked by the healthcheck', () => {
    const command = services.nats.command as string[];
    expect(command).toContain('-js');
    const storeDir = command[command.indexOf('-sd') + 1];
    expect(services.nats.volumes).toContain(`nats-data:${storeDir}`);
    const monitor = command[command.indexOf('-m') + 1];
    expect(services.nats.healthcheck.test.join(' ')).toContain(`127.0.0.1:${monitor}/healthz`);
  });

  it('serve and the workers reach that NATS; serve is checked on its own port', () => {
    for (const name of ['serve', 'worker']) {
      const url = new URL(services[name].environment.OCI_BUILD_NATS_URL);
      expect(url.hostname).toBe('nats');
      expect(url.port || '4222').toBe('4222');
      expect(services[name].depends_on.nats.condition).toBe('service_healthy');
    }
    const env = services.serve.environment as Record<string, string>;
    const port = setting(env, 'OCI_BUILD_SERVER_PORT', DEFAULTS.server.port);
    expect(env.OCI_BUILD_SERVER_HOST).toBe('0.0.0.0');
    expect(services.serve.healthcheck.test.join(' ')).toContain(`/dev/tcp/127.0.0.1/${port}`);
    expect(services.serve.ports).toContain(`127.0.0.1:${port}:${port}`);
  });

  it('two worker replicas with the privileges of buildah and bubblewrap, stopped after their drain', () => {
    const w = services.worker;
    expect(w.deploy.replicas).toBe(2);
    expect(w.cap_add).toEqual(['SYS_ADMIN']);
    expect(w.privileged).toBeUndefined();
    expect(w.devices).toBeUndefined();
    const graceMs = parseDuration(setting(w.environment, 'OCI_BUILD_WORKER_SHUTDOWN_GRACE', DEFAULTS.worker.shutdownGrace));
    expect(parseDuration(w.stop_grace_period)).toBeGreaterThan(graceMs);
    // The work directory is a named volume (shared), buildah's store one per replica (anonymous).
    expect(w.volumes).toContain(`work:${w.environment.OCI_BUILD_WORK_DIR}`);
    expect((w.volumes as string[]).some((v) => !v.includes(':') && w.environment.OCI_BUILD_IMAGE_ROOT.startsWith(v))).toBe(true);
    expect(w.secrets.map((s: { target: string }) => s.target)).toContain(w.environment.OCI_BUILD_IMAGE_AUTH_FILE);
  });
});

describe('deploy/systemd', () => {
  const serve = unitKeys('systemd/oci-build-serve.service');
  const worker = unitKeys('systemd/oci-build-worker@.service');

  it('both run the installed executable from the environment file', () => {
    expect(serve.get('ExecStart')).toEqual(['/usr/local/bin/oci-build serve']);
    expect(worker.get('ExecStart')).toEqual(['/usr/local/bin/oci-build worker']);
    for (const unit of [serve, worker]) expect(unit.get('EnvironmentFile')).toEqual(['/etc/oci-build/oci-build.env']);
  });

  it('a worker replica is stopped by SIGTERM to oci-build alone, and killed only after its drain', () => {
    expect(worker.get('KillMode')).toEqual(['mixed']);
    expect(worker.get('KillSignal')).toEqual(['SIGTERM']);
    const env = envAssignments(worker.get('Environment') ?? []);
    const graceMs = parseDuration(setting(env, 'OCI_BUILD_WORKER_SHUTDOWN_GRACE', DEFAULTS.worker.shutdownGrace));
    expect(parseDuration(worker.get('TimeoutStopSec')![0]!)).toBeGreaterThan(graceMs);
    // One name, store and run root per instance.
    for (const name of ['OCI_BUILD_WORKER_NAME', 'OCI_BUILD_IMAGE_ROOT', 'OCI_BUILD_IMAGE_RUN_ROOT']) expect(env[name], name).toContain('%i');
    // Sandboxing that would break buildah or bubblewrap is not set.
    for (const key of ['RestrictNamespaces', 'ProtectHostname', 'RestrictSUIDSGID', 'MemoryDenyWriteExecute', 'PrivateDevices']) expect(worker.has(key), key).toBe(false);
  });

  it('serve has no privilege at all', () => {
    expect(serve.get('DynamicUser')).toEqual(['yes']);
    expect(serve.get('CapabilityBoundingSet')).toEqual(['']);
    const env = envAssignments(serve.get('Environment') ?? []);
    expect(env.OCI_BUILD_WORK_DIR).toBe(`/var/lib/${serve.get('StateDirectory')![0]}`);
  });
});
