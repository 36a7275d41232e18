// The named scenarios, which servers and transports each applies to, and the suites that group them.
import type { Scenario } from './load/orchestrate.js'
import type { TransportKind } from './load/transport.js'

export type ServerKey = 'hyperhub' | 'hyperhub-power' | 'hyperhub-js' | 'hyperhub-io0' | 'hyperhub-io1' | 'hyperhub-io2' | 'aedes' | 'mosquitto' | 'mosquitto-unlimited'

export interface NamedScenario {
  name: string
  what: string
  scenario: Scenario
  /** server → transports it is measured over */
  servers: Partial<Record<ServerKey, TransportKind[]>>
}

const pub = (o: Partial<Extract<Scenario, { kind: 'publish' }>>): Scenario => ({
  kind: 'publish', transport: 'tcp', devices: 100, qos: 1, window: 10, payloadBytes: 256, rate: 0, warmupMs: 2000, durationMs: 10_000, procs: 1, reader: false, ...o,
})
const brokers = (): Partial<Record<ServerKey, TransportKind[]>> => ({ aedes: ['tcp'], mosquitto: ['tcp'] })

export const SCENARIOS: NamedScenario[] = [
  { name: 'qos1-100', what: 'QoS 1 telemetry, 100 devices, 256 B, 10 in flight each, full speed', scenario: pub({}), servers: { hyperhub: ['tcp', 'tls', 'wss'], 'hyperhub-js': ['tcp', 'tls'], 'hyperhub-power': ['tcp'], ...brokers() } },
  { name: 'qos0-100', what: 'QoS 0 telemetry, 100 devices, 256 B, full speed (server-confirmed by PINGREQ markers)', scenario: pub({ qos: 0 }), servers: { hyperhub: ['tcp', 'tls'], ...brokers() } },
  { name: 'qos1-1000', what: 'QoS 1 telemetry, 1,000 devices, 256 B, 10 in flight each', scenario: pub({ devices: 1000 }), servers: { hyperhub: ['tcp', 'tls'], ...brokers() } },
  { name: 'qos0-1000', what: 'QoS 0 telemetry, 1,000 devices, 256 B', scenario: pub({ devices: 1000, qos: 0 }), servers: { hyperhub: ['tcp'], ...brokers() } },
  { name: 'e2e-full', what: 'QoS 1 from 100 devices at full speed, one back end reading everything (hub: built-in endpoint stream; brokers: a QoS 1 wildcard subscriber)', scenario: pub({ reader: true }), servers: { hyperhub: ['tcp'], ...brokers(), 'mosquitto-unlimited': ['tcp'] } },
  { name: 'e2e-20k', what: 'QoS 1 from 100 devices at 200 msg/s each (20k msg/s), one back end reading everything: end-to-end latency', scenario: pub({ reader: true, rate: 200 }), servers: { hyperhub: ['tcp', 'tls'], ...brokers() } },
  { name: 'e2e-half-peak', what: 'as e2e-20k, at half the rate qos1-100 reached on the same server in this run', scenario: pub({ reader: true, rate: -0.5 }), servers: { hyperhub: ['tcp'], ...brokers() } },
  { name: 'storm-10k', what: 'connection storm: 10,000 devices connect (100 at a time), held idle; connect rate and memory per connection', scenario: { kind: 'storm', transport: 'tcp', devices: 10_000, concurrency: 100, settleMs: 3000 }, servers: { hyperhub: ['tls', 'tcp'], ...brokers() } },
  { name: 'idle-19k', what: '19,000 idle connections held (the per-process open-file limit here is 20,000)', scenario: { kind: 'storm', transport: 'tcp', devices: 19_000, concurrency: 100, settleMs: 3000 }, servers: { hyperhub: ['tls'], ...brokers() } },
  // the MQTT edge on the main thread (--io-threads 0) and on 1 or 2 I/O threads, side by side
  { name: 'qos1-100-io', what: 'as qos1-100, with --io-threads 0, 1 and 2', scenario: pub({}), servers: { 'hyperhub-io0': ['tcp', 'tls'], 'hyperhub-io1': ['tcp', 'tls'], 'hyperhub-io2': ['tcp', 'tls'] } },
  { name: 'storm-5k-io', what: 'connection storm over TLS: 5,000 devices (100 at a time), with --io-threads 0, 1 and 2', scenario: { kind: 'storm', transport: 'tls', devices: 5000, concurrency: 100, settleMs: 2000 }, servers: { 'hyperhub-io0': ['tls'], 'hyperhub-io1': ['tls'], 'hyperhub-io2': ['tls'] } },
  // a short storm for the quick suite
  { name: 'storm-2k', what: 'connection storm: 2,000 devices (quick version of storm-10k)', scenario: { kind: 'storm', transport: 'tcp', devices: 2000, concurrency: 100, settleMs: 2000 }, servers: { hyperhub: ['tls'], aedes: ['tcp'] } },
]

export interface Suite { scenarios: string[]; runs: number; shorten?: boolean; servers?: ServerKey[] }

export const SUITES: Record<string, Suite> = {
  /** under 3 minutes */
  quick: { scenarios: ['qos1-100', 'e2e-20k', 'storm-2k'], runs: 1, shorten: true },
  full: { scenarios: ['qos1-100', 'qos0-100', 'qos1-1000', 'qos0-1000', 'e2e-full', 'e2e-20k', 'e2e-half-peak', 'storm-10k', 'idle-19k'], runs: 1 },
  /** the peers alone, on the scenarios that apply to a plain broker */
  peers: { scenarios: ['qos1-100', 'qos0-100', 'e2e-full', 'e2e-20k', 'storm-10k'], runs: 1, servers: ['aedes', 'mosquitto', 'mosquitto-unlimited'] },
  /** the I/O threads side by side, 3 interleaved runs */
  'io-threads': { scenarios: ['qos1-100-io', 'storm-5k-io'], runs: 3, shorten: true },
  /** the headline, 3 interleaved runs */
  headline: { scenarios: ['qos1-100'], runs: 3 },
}
