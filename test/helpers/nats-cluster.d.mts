// Types of nats-cluster.mjs (plain JavaScript so the chaos benchmark can use it too).

export interface ClusterNode {
  name: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  url: string;
  storeDir: string;
  running(): boolean;
  /** SIGKILL: no goodbye to the cluster, as a crashed machine. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

export interface NatsCluster {
  nodes: ClusterNode[];
  /** Every client URL (the form of nats.servers). */
  urls: string[];
  node(name: string): ClusterNode;
  /** The server_name of the node that leads the stream (or the stream's consumer) now. */
  leaderOf(stream: string, consumer?: string): Promise<string | undefined>;
  /** Waits until a running node leads the stream (or its consumer); its server_name. */
  waitForLeader(stream: string, consumer?: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * `running`: how many nodes are started (the first ones; default all). With fewer than a majority
 * the cluster has no JetStream meta leader, and this does not wait for one.
 */
export function startNatsCluster(options?: { size?: number; name?: string; running?: number }): Promise<NatsCluster>;
