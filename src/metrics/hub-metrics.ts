// What operators watch, in Prometheus' text format (prom-client, a registry of the hub's own):
// connections, messages in and out per transport, the ack latency after commit, queue depths, each
// throttle's admitted/queued/refused counts, the daily quota, and the process's own figures. Names
// follow Prometheus conventions (`hyperhub_…_total` for counters, base units). Values are read when
// scraped: nothing here runs per message but the edge's counters.
import client from 'prom-client'
import type { DeviceEdge } from '../edge/device-edge.js'
import { EdgeStats } from '../edge/edge-stats.js'
import type { HubThrottles } from '../throttle/hub-throttles.js'
import { THROTTLES } from '../throttle/tiers.js'

export interface MetricsSources {
  edge: DeviceEdge
  throttles: HubThrottles
  /** bytes held AMQP WebSockets sent while the hub held them, all together */
  webSocketHeldInputBytes: () => number
  /** events the built-in endpoint holds per partition */
  partitionDepths: () => number[]
}

export class HubMetrics {
  readonly registry = new client.Registry()
  readonly ackLatency: client.Histogram

  constructor(private readonly s: MetricsSources) {
    const r = this.registry
    client.collectDefaultMetrics({ register: r, prefix: 'hyperhub_' })
    this.ackLatency = new client.Histogram({
      name: 'hyperhub_telemetry_ack_latency_seconds', registers: [r],
      help: 'time from a QoS 1 / unsettled telemetry message arriving to its acknowledgement (PUBACK or AMQP accepted), after its commit; one message in 64 sampled',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
    })
    s.edge.stats = new EdgeStats((sec) => this.ackLatency.observe(sec))
    new client.Gauge({
      name: 'hyperhub_connections', help: 'open device connections by transport and state', labelNames: ['transport', 'state'], registers: [r],
      collect() {
        this.reset()
        for (const [transport, n] of s.edge.connectionsByTransport()) {
          this.set({ transport, state: 'connected' }, n.connected)
          this.set({ transport, state: 'opening' }, n.opening)
        }
      },
    })
    new client.Counter({
      name: 'hyperhub_telemetry_received_total', help: 'device-to-cloud messages received, by transport', labelNames: ['transport'], registers: [r],
      collect() { this.reset(); for (const [transport, n] of Object.entries(s.edge.stats.telemetryIn)) this.inc({ transport }, n) },
    })
    new client.Counter({
      name: 'hyperhub_device_messages_sent_total', help: 'messages the hub sent to devices (C2D, twin answers and patches), by transport', labelNames: ['transport'], registers: [r],
      collect() { this.reset(); for (const [transport, n] of Object.entries(s.edge.stats.deliveredOut)) this.inc({ transport }, n) },
    })
    new client.Gauge({
      name: 'hyperhub_telemetry_queue_messages', help: 'telemetry read from devices that the shards have not committed yet', registers: [r],
      collect() { this.set(s.edge.telemetryQueue.messages) },
    })
    new client.Gauge({
      name: 'hyperhub_telemetry_queue_bytes', help: 'bytes of telemetry read from devices that the shards have not committed yet', registers: [r],
      collect() { this.set(s.edge.telemetryQueue.bytes) },
    })
    new client.Gauge({
      name: 'hyperhub_websocket_held_input_bytes', help: 'what AMQP WebSocket peers sent while the hub held their connections, all together (bounded hub-wide)', registers: [r],
      collect() { this.set(s.webSocketHeldInputBytes()) },
    })
    new client.Gauge({
      name: 'hyperhub_partition_events', help: 'events the built-in endpoint holds, per partition', labelNames: ['partition'], registers: [r],
      collect() { s.partitionDepths().forEach((n, p) => this.set({ partition: String(p) }, n)) },
    })
    const throttleCounts = () => s.throttles.report().throttles as Record<string, { perSecond: number | null; admitted: number; queued: number; refused: number }>
    new client.Counter({
      name: 'hyperhub_throttle_operations_total', help: 'operations each throttle saw, by outcome (admitted at once, queued, refused with 429)', labelNames: ['throttle', 'outcome'], registers: [r],
      collect() {
        this.reset()
        const all = throttleCounts()
        for (const name of THROTTLES) for (const outcome of ['admitted', 'queued', 'refused'] as const) this.inc({ throttle: name, outcome }, all[name]![outcome])
      },
    })
    new client.Gauge({
      name: 'hyperhub_throttle_limit_per_second', help: 'each throttle\'s limit under the current tier (absent: not throttled)', labelNames: ['throttle'], registers: [r],
      collect() {
        this.reset()
        for (const [name, c] of Object.entries(throttleCounts())) if (c.perSecond !== null) this.set({ throttle: name }, c.perSecond)
      },
    })
    new client.Gauge({
      name: 'hyperhub_quota_messages_used', help: 'billed messages today (UTC)', registers: [r],
      collect() { this.set(s.throttles.meter.snapshot().used) },
    })
    new client.Gauge({
      name: 'hyperhub_quota_messages_per_day', help: 'the tier\'s daily message quota (absent on the unlimited tier)', registers: [r],
      collect() { this.reset(); const q = s.throttles.meter.snapshot().quota; if (q !== null) this.set(q) },
    })
    new client.Counter({
      name: 'hyperhub_metered_messages_total', help: 'billed messages today (4 KB chunks, 0.5 KB on F1), by operation; resets at midnight UTC', labelNames: ['operation'], registers: [r],
      collect() { this.reset(); for (const [operation, c] of Object.entries(s.throttles.meter.snapshot().operations)) this.inc({ operation }, c.messages) },
    })
  }

  async text(): Promise<string> {
    return this.registry.metrics()
  }
}
