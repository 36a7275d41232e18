// An I/O thread: it accepts its share of the MQTT listeners' connections (TLS and TCP, on sockets it
// shares with the other I/O threads), does their TLS, framing and protocol, and exchanges their
// traffic with the shards directly. What it must ask the hub goes to the main thread (io-edge.ts).
import type net from 'node:net'
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import type { Logger } from '../log.js'
import { createTcpListener, createTlsListener, listen } from '../mqtt/listeners.js'
import { SharedResumption, type SharedResumptionInit } from '../tls/session-resumption.js'
import { sessionCacheShare } from '../tls/session-cache.js'
import { IoEdge } from './io-edge.js'
import { PortBatcher, type IoCommand, type IoEvent } from './io-protocol.js'
import { IoShardLink } from './io-shard-link.js'

export interface IoThreadInit {
  thread: number
  threads: number
  /** one per shard, in shard order */
  shardPorts: MessagePort[]
  partitions: number
  framer: 'wasm' | 'js'
  key: string
  cert: string
  resumption: SharedResumptionInit
}

/** How long a closing connection may take to flush what was written to it at shutdown. */
const CLOSE_FLUSH_MS = 2000

const init = workerData as IoThreadInit
const port = parentPort!
const toMain = new PortBatcher<IoEvent>(port)

function postingLogger(): Logger {
  const post = (level: 'debug' | 'info' | 'warn' | 'error') => (message: string, fields?: Record<string, unknown>) => {
    const clean: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(fields ?? {})) clean[k] = v instanceof Error ? v.message : v
    toMain.post({ t: 'log', level, message, fields: { ioThread: init.thread, ...clean } })
  }
  const logger: Logger = { debug: post('debug'), info: post('info'), warn: post('warn'), error: post('error'), child: () => logger }
  return logger
}

const log = postingLogger()
const link = new IoShardLink(init.thread, init.shardPorts, init.partitions, (ops) => toMain.post({ t: 'shard-ops', ops }))
const edge = new IoEdge(link, log, init.framer, { thread: init.thread, threads: init.threads }, toMain)
const never = () => {} // the shards send these to the main thread only
link.listen({
  acks: (flat, from) => edge.acks(flat, from),
  telemetryDone: (flat, from) => edge.telemetryDone(flat, from),
  sessionOpened: (connId, present, filters, errorCode) => edge.sessionOpened(connId, present, filters, errorCode),
  subscriptionStored: (connId, packetId, errorCode) => edge.subscriptionStored(connId, packetId, errorCode),
  publish: (connId, topic, payload, qos, packetId, dup) => edge.publishFromShard(connId, topic, payload, qos, packetId, dup),
  rejected: (connId, code, message, packetId) => edge.rejected(connId, code, message, packetId),
  log: (level, message, fields) => log[level](message, fields),
  c2dCount: never, feedback: never, partitionAdvanced: never, fatal: never,
})

const servers: net.Server[] = []
// the session-id cache's bounds are the hub's, shared out: N threads hold no more than one would
const resumption = new SharedResumption(init.resumption, sessionCacheShare(init.threads))
const tls = createTlsListener(edge, init.key, init.cert, resumption)
const tcp = createTcpListener(edge)

function fdOf(server: net.Server): number {
  return (server as unknown as { _handle: { fd: number } })._handle.fd
}

async function listenFirst(spec: { host: string; mqttPort: number; mqttTcpPort: number | null }): Promise<void> {
  let what: 'mqttPort' | 'mqttTcpPort' = 'mqttPort'
  try {
    const mqttPort = await listen(tls, spec.mqttPort, spec.host)
    servers.push(tls)
    let tcpPort: number | null = null
    if (spec.mqttTcpPort !== null) {
      what = 'mqttTcpPort'
      tcpPort = await listen(tcp, spec.mqttTcpPort, spec.host)
      servers.push(tcp)
    }
    toMain.post({ t: 'listening', mqttPort, mqttFd: fdOf(tls), tcpPort, tcpFd: tcpPort === null ? null : fdOf(tcp) })
  } catch (e) {
    toMain.post({ t: 'listen-failed', what, code: (e as NodeJS.ErrnoException).code ?? 'unknown' })
  }
}

/** The other I/O threads accept on the first one's listening sockets: each loop takes its share. */
async function listenShared(mqttFd: number, tcpFd: number | null): Promise<void> {
  const onFd = (server: net.Server, fd: number) => new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ fd }, () => { server.off('error', reject); resolve((server.address() as net.AddressInfo).port) })
  })
  try {
    const mqttPort = await onFd(tls, mqttFd)
    servers.push(tls)
    const tcpPort = tcpFd === null ? null : await onFd(tcp, tcpFd)
    if (tcpFd !== null) servers.push(tcp)
    toMain.post({ t: 'listening', mqttPort, mqttFd, tcpPort, tcpFd })
  } catch (e) {
    toMain.post({ t: 'listen-failed', what: 'mqttPort', code: (e as NodeJS.ErrnoException).code ?? 'unknown' })
  }
}

/** Shutdown, once the shards sent their last acknowledgements here: every connection closes after what was written to it. */
async function closeAll(reason: string): Promise<void> {
  await link.allStopped()
  edge.closeAll(reason)
  link.flush()
  const deadline = Date.now() + CLOSE_FLUSH_MS
  const open = () => Promise.all(servers.map((s) => new Promise<number>((r) => s.getConnections((_e, n) => r(n ?? 0))))).then((n) => n.reduce((a, b) => a + b, 0))
  while (Date.now() < deadline && (await open()) > 0) await new Promise((r) => setTimeout(r, 20))
  toMain.post({ t: 'closed-all' })
  toMain.flush()
}

port.on('message', (batch: IoCommand[]) => {
  for (const c of batch) {
    switch (c.t) {
      case 'listen': void listenFirst(c.spec); break
      case 'listen-fd': void listenShared(c.mqttFd, c.tcpFd); break
      case 'stop-listening':
        // not closed here: the threads share one file descriptor per listener (listen({ fd })), and a
        // close by each would close a number some other file may hold by then. New connections are
        // refused from now on; the descriptors close as the threads end, together, at the end of shutdown
        for (const s of servers) s.maxConnections = 0
        toMain.post({ t: 'stopped-listening' })
        break
      case 'pause-reading':
        edge.pauseAll()
        link.flush()
        toMain.post({ t: 'paused' })
        break
      case 'close-all': void closeAll(c.reason); break
      case 'ticket-keys': resumption.update(c.keys); break
      default: edge.command(c)
    }
  }
})
