// The edge's side of the shards: one worker thread per shard, one outgoing batch per shard per
// event-loop turn, and the dispatch of what the shards send back.
import { Worker } from 'node:worker_threads'
import { Packr } from 'msgpackr'
import { HubError } from './rest/hub-error.js'
import {
  moduleKey, OP_ACKS, OP_TELEMETRY_DONE, OP_C2D_COUNT, OP_FEEDBACK, OP_LOG, OP_PARTITION_ADVANCED, OP_PUBLISH, OP_REJECTED, OP_REPLY, OP_REQUEST, OP_SESSION_OPENED, OP_SUBSCRIBED, postBatch, shardOf,
  type ControlMessage, type ShardInit, type ShardRequestKind,
} from './shard-protocol.js'

export interface ShardEvents {
  /** flat [connId, packetId, connId, packetId, ...], all committed */
  acks(flat: number[], from: number): void
  /** telemetry the shard finished with (stored, refused or dropped): flat [connId, count, bytes, ...] from `from` */
  telemetryDone(flat: number[], from: number): void
  sessionOpened(connId: number, sessionPresent: boolean, filters: string[], errorCode: number): void
  subscriptionStored(connId: number, packetId: number, errorCode: number): void
  /** the shard asks for a PUBLISH to one of its devices' connections */
  publish(connId: number, topic: string, payload: Uint8Array, qos: number, packetId: number, dup: boolean): void
  c2dCount(deviceId: string, count: number): void
  feedback(key: unknown[], stored: unknown): void
  /** one commit's events on a partition, with the stream frame when tailing was asked for */
  partitionAdvanced(partition: number, lastSequenceNumber: number, firstSequenceNumber: number, frame: Uint8Array | null): void
  rejected(connId: number, code: number, message: string, packetId: number): void
  log(level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>): void
  fatal(shard: number, error: Error): void
}

// The shard is TypeScript and a worker does not inherit the parent's tsx hooks, so a one-line
// bootstrap registers them in the worker and then imports the shard.
const WORKER_BOOTSTRAP = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})`
  + `.then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('../shards/shard-worker.ts', import.meta.url).href)}) })`

export class ShardPool {
  private readonly workers: Worker[] = []
  private readonly outgoing: unknown[][][] = []
  private flushScheduled = false
  private readonly packr = new Packr({ useRecords: false })
  private stopping = false
  private nextRequestId = 1
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()

  constructor(private readonly init: Omit<ShardInit, 'shardIndex'>, private readonly events: ShardEvents) {}

  async start(): Promise<void> {
    const ready: Promise<void>[] = []
    for (let i = 0; i < this.init.shardCount; i++) {
      // the worker is TypeScript: run it through the same loader as the hub
      const worker = new Worker(WORKER_BOOTSTRAP, { eval: true, workerData: { ...this.init, shardIndex: i } })
      this.workers.push(worker)
      this.outgoing.push([])
      ready.push(new Promise((resolve, reject) => {
        const onReady = (m: unknown) => { if ((m as ControlMessage).type === 'ready') { worker.off('message', onReady); resolve() } }
        worker.on('message', onReady)
        worker.once('error', reject)
      }))
      worker.on('message', (m: Uint8Array | ControlMessage) => { if (m instanceof Uint8Array) this.dispatch(m) })
      worker.on('error', (e) => this.events.fatal(i, e))
      worker.on('exit', (code) => { if (!this.stopping) this.events.fatal(i, new Error(`shard ${i} exited with code ${code}`)) })
    }
    await Promise.all(ready)
  }

  shardFor(deviceId: string): number {
    return shardOf(deviceId, this.init.partitions, this.init.shardCount)
  }

  send(shard: number, op: unknown[]): void {
    this.outgoing[shard]!.push(op)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      // after this turn's socket reads: everything they produced goes in one message per shard
      setImmediate(() => this.flush())
    }
  }

  /**
   * A request the shard owning the device answers (REST handlers need the device's state, which
   * only its shard holds). Rides the same batches as everything else; rejects with the shard's HubError.
   */
  request<T = unknown>(kind: ShardRequestKind, deviceId: string, ...args: unknown[]): Promise<T> {
    return this.requestShard<T>(this.shardFor(deviceId), kind, deviceId, ...args)
  }

  /** A request about a device's module: its state lives in the device's shard, under `{deviceId}/{moduleId}`. */
  requestForModule<T = unknown>(kind: ShardRequestKind, deviceId: string, moduleId: string, ...args: unknown[]): Promise<T> {
    return this.requestShard<T>(this.shardFor(deviceId), kind, moduleKey(deviceId, moduleId), ...args)
  }

  /** The same request to every shard (hub-wide settings such as routing); resolves when all applied it. */
  broadcast(kind: ShardRequestKind, ...args: unknown[]): Promise<unknown[]> {
    return Promise.all(this.workers.map((_, i) => this.requestShard(i, kind, '', ...args)))
  }

  private requestShard<T>(shard: number, kind: ShardRequestKind, deviceId: string, ...args: unknown[]): Promise<T> {
    if (this.stopping) return Promise.reject(new HubError(503001, 'hub is shutting down'))
    const id = this.nextRequestId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.send(shard, [OP_REQUEST, id, kind, deviceId, ...args])
    })
  }

  flush(): void {
    this.flushScheduled = false
    for (let i = 0; i < this.workers.length; i++) {
      const ops = this.outgoing[i]!
      if (ops.length === 0) continue
      this.outgoing[i] = []
      postBatch(this.workers[i]!, this.packr, ops)
    }
  }

  private dispatch(buf: Uint8Array): void {
    const ops = this.packr.unpack(buf) as unknown[][]
    for (const op of ops) {
      // one op that fails (a bug, a client's odd input) must not take the ops after it, or the hub, with it
      try {
        this.dispatchOne(op)
      } catch (e) {
        this.events.log('error', 'a shard message could not be handled', { op: op[0], error: e as Error })
      }
    }
  }

  private dispatchOne(op: unknown[]): void {
    switch (op[0]) {
      case OP_ACKS: this.events.acks(op as number[], 1); break
      case OP_TELEMETRY_DONE: this.events.telemetryDone(op as number[], 1); break
      case OP_SESSION_OPENED: this.events.sessionOpened(op[1] as number, op[2] as boolean, (op[3] as string[] | undefined) ?? [], (op[4] as number | undefined) ?? 0); break
      case OP_SUBSCRIBED: this.events.subscriptionStored(op[1] as number, op[2] as number, op[3] as number); break
      case OP_PUBLISH: this.events.publish(op[1] as number, op[2] as string, op[3] as Uint8Array, op[4] as number, op[5] as number, op[6] as boolean); break
      case OP_C2D_COUNT: this.events.c2dCount(op[1] as string, op[2] as number); break
      case OP_FEEDBACK: this.events.feedback(op[1] as unknown[], op[2]); break
      case OP_REPLY: {
        const p = this.pending.get(op[1] as number)
        if (!p) break
        this.pending.delete(op[1] as number)
        if (op[2] === 0) p.resolve(op[3])
        else p.reject(new HubError(op[2] as number, op[3] as string))
        break
      }
      case OP_PARTITION_ADVANCED: this.events.partitionAdvanced(op[1] as number, op[2] as number, op[3] as number, op[4] as Uint8Array | null); break
      case OP_REJECTED: this.events.rejected(op[1] as number, op[2] as number, op[3] as string, op[4] as number); break
      case OP_LOG: this.events.log(op[1] as 'info', op[2] as string, (op[3] as Record<string, unknown> | undefined) ?? {}); break
    }
  }

  /** Sends what is queued, lets each shard finish its commits (their acks arrive first), then ends them. */
  async stop(): Promise<void> {
    this.flush()
    this.stopping = true
    // requests already flushed are still answered by the shards before they stop: only what is
    // left unanswered after that fails
    await Promise.all(this.workers.map((w) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => { void w.terminate().then(() => resolve()) }, 10_000)
      w.on('message', (m: unknown) => {
        if ((m as ControlMessage).type === 'stopped') { clearTimeout(timer); void w.terminate().then(() => resolve()) }
      })
      w.postMessage({ type: 'stop' } satisfies ControlMessage)
    })))
    for (const p of this.pending.values()) p.reject(new HubError(503001, 'hub is shutting down'))
    this.pending.clear()
  }
}
