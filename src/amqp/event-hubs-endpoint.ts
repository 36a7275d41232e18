// The built-in endpoint spoken as Event Hubs over AMQP: `$management` READ for the hub and its
// partitions, and partition receivers on `{entity}/ConsumerGroups/{group}/Partitions/{p}` that
// start where the client's filter says, send only while the client gives credit and its connection
// has room for more unread output, and keep tailing as shards commit. A receiver with an owner
// level (epoch) takes the partition from receivers with a lower one (`amqp:link:stolen`).
import rhea from 'rhea'
import type { BuiltInEndpoint } from '../events/built-in-endpoint.js'
import type { Logger } from '../log.js'
import { eventMessage } from './event-message.js'
import type { OutgoingRoom } from './outgoing-budget.js'
import { FilterError, parsePositionFilter, type StartPosition } from './position-filter.js'

const SELECTOR = 'apache.org:selector-filter:string'
const MAX_NON_EPOCH_RECEIVERS = 5
const BATCH = 300
/** what one pump reads from the store at a time: large events come in fewer per read */
const BATCH_BYTES = 1024 * 1024

export class AmqpError extends Error {
  constructor(readonly condition: string, message: string) { super(message) }
}

interface PartitionReceiver {
  sender: rhea.Sender
  partition: number
  group: string
  epoch: number | null
  next: number
  /** the connection's output: the pump waits while it is full */
  room: OutgoingRoom
  isWaitingForRoom: boolean
}

export class EventHubsEndpoint {
  private readonly receivers = new Set<PartitionReceiver>()

  constructor(readonly entity: string, private readonly endpoint: BuiltInEndpoint, private readonly log: Logger) {}

  /** `{entity}/ConsumerGroups/{group}/Partitions/{p}` → its parts, or undefined if it is not one. */
  parseAddress(address: string): { group: string; partition: number } | undefined {
    const m = /^\/?([^/]+)\/ConsumerGroups\/([^/]+)\/Partitions\/([^/]+)$/i.exec(address)
    if (!m || m[1]!.toLowerCase() !== this.entity.toLowerCase()) return undefined
    const group = this.endpoint.consumerGroups().find((g) => g.toLowerCase() === decodeURIComponent(m[2]!).toLowerCase())
    if (!group) throw new AmqpError('amqp:not-found', `The messaging entity '${address}' could not be found.`)
    if (!/^\d+$/.test(m[3]!) || Number(m[3]) >= this.endpoint.partitions) throw new AmqpError('amqp:not-found', `The messaging entity '${address}' could not be found.`)
    return { group, partition: Number(m[3]) }
  }

  /** The answer to a `$management` READ, or an error status. */
  management(props: Record<string, unknown>): { status: number; description: string; body?: Record<string, unknown> } {
    if (props.operation !== 'READ') return { status: 400, description: `operation ${String(props.operation)} is not supported` }
    if (String(props.name).toLowerCase() !== this.entity.toLowerCase()) return { status: 404, description: `The messaging entity '${String(props.name)}' could not be found.` }
    this.endpoint.refresh()
    if (props.type === 'com.microsoft:eventhub') {
      return {
        status: 200, description: 'OK',
        body: { name: this.entity, type: 'com.microsoft:eventhub', created_at: new Date(0), partition_count: this.endpoint.partitions,
          partition_ids: Array.from({ length: this.endpoint.partitions }, (_, p) => String(p)) },
      }
    }
    if (props.type === 'com.microsoft:partition') {
      const raw = String(props.partition)
      if (!/^\d+$/.test(raw) || Number(raw) >= this.endpoint.partitions) return { status: 404, description: `partition ${raw} does not exist` }
      const info = this.endpoint.partitionInfo(Number(raw))
      return {
        status: 200, description: 'OK',
        body: {
          name: this.entity, type: 'com.microsoft:partition', partition: raw,
          begin_sequence_number: rhea.types.wrap_long(info.beginSequenceNumber),
          last_enqueued_sequence_number: rhea.types.wrap_long(info.lastEnqueuedSequenceNumber),
          last_enqueued_offset: info.lastEnqueuedOffset,
          last_enqueued_time_utc: info.lastEnqueuedTimeUtc ? new Date(info.lastEnqueuedTimeUtc) : new Date(0),
          is_partition_empty: info.isEmpty,
        },
      }
    }
    return { status: 400, description: `type ${String(props.type)} is not supported` }
  }

  private start(partition: number, position: StartPosition): number {
    switch (position.kind) {
      case 'earliest': return this.endpoint.beginningOf(partition)
      case 'latest': return this.endpoint.endOf(partition)
      case 'sequence': return Math.max(this.endpoint.beginningOf(partition), position.sequence + (position.inclusive ? 0 : 1))
      case 'offset': return this.endpoint.sequenceAtOffset(partition, position.offset, position.inclusive)
      case 'enqueued-time': return this.endpoint.sequenceAt(partition, position.ms, position.inclusive)
    }
  }

  /** A client attached a receiver to a partition address: serve it, or throw AmqpError. */
  attach(sender: rhea.Sender, group: string, partition: number, room: OutgoingRoom): void {
    const filters = (sender.source as { filter?: Record<string, unknown> }).filter ?? {}
    const raw = filters[SELECTOR]
    const expr = typeof raw === 'string' ? raw : (raw as { value?: unknown } | undefined)?.value
    let position: StartPosition
    try {
      position = parsePositionFilter(expr === undefined ? undefined : String(expr))
    } catch (e) {
      if (e instanceof FilterError) throw new AmqpError('amqp:invalid-field', e.message)
      throw e
    }
    const epochProp = sender.properties?.['com.microsoft:epoch']
    const epoch = epochProp === undefined || epochProp === null ? null : Number(epochProp)
    const peers = [...this.receivers].filter((r) => r.group === group && r.partition === partition)
    const highest = peers.reduce<number | null>((h, r) => (r.epoch !== null && (h === null || r.epoch > h) ? r.epoch : h), null)
    if (epoch === null) {
      if (highest !== null) throw new AmqpError('amqp:link:stolen', `a receiver with owner level ${highest} holds partition ${partition} of ${group}`)
      if (peers.length >= MAX_NON_EPOCH_RECEIVERS) throw new AmqpError('amqp:resource-limit-exceeded', `at most ${MAX_NON_EPOCH_RECEIVERS} receivers per partition and consumer group`)
    } else {
      if (highest !== null && epoch < highest) throw new AmqpError('amqp:link:stolen', `owner level ${epoch} is lower than the current ${highest}`)
      for (const r of peers) {
        this.receivers.delete(r)
        r.sender.close({ condition: 'amqp:link:stolen', description: `New receiver with higher epoch of '${epoch}' is created hence current receiver is getting disconnected.` })
      }
    }
    this.endpoint.refresh()
    const receiver: PartitionReceiver = { sender, partition, group, epoch, next: this.start(partition, position), room, isWaitingForRoom: false }
    this.receivers.add(receiver)
    this.log.debug('event hubs receiver attached', { group, partition, from: receiver.next, epoch })
    this.pump(receiver)
  }

  detached(sender: rhea.Sender): void {
    for (const r of this.receivers) if (r.sender === sender) this.receivers.delete(r)
  }

  /** Every receiver of a connection that is gone, whether or not rhea reported its links closed. */
  connectionClosed(connection: rhea.Connection): void {
    for (const r of this.receivers) if (r.sender.connection === connection) this.receivers.delete(r)
  }

  /** The client granted credit. */
  sendable(sender: rhea.Sender): void {
    for (const r of this.receivers) if (r.sender === sender) this.pump(r)
  }

  /** A shard committed new events on partition `p`. */
  advanced(p: number): void {
    let refreshed = false
    for (const r of this.receivers) {
      if (r.partition !== p || !r.sender.sendable()) continue
      if (!refreshed) { this.endpoint.refresh(); refreshed = true }
      this.pump(r)
    }
  }

  private pump(r: PartitionReceiver): void {
    while (r.sender.sendable() && this.hasRoom(r)) {
      const events = this.endpoint.readStored(r.partition, r.next, BATCH, BATCH_BYTES)
      if (events.length === 0) return
      for (const { sequence, offset, event } of events) {
        if (!r.sender.sendable() || !this.hasRoom(r)) return
        // encoded here so that the connection's budget knows its size
        const bytes = rhea.message.encode(eventMessage(sequence, offset, event))
        r.room.queued(r.sender.send(bytes, undefined, 0), bytes.length)
        r.next = sequence + 1
      }
    }
  }

  /** Whether the receiver's connection may take more; if not, the pump resumes when it may. */
  private hasRoom(r: PartitionReceiver): boolean {
    if (r.room.hasRoom()) return true
    if (!r.isWaitingForRoom) {
      r.isWaitingForRoom = true
      r.room.whenRoom(() => {
        r.isWaitingForRoom = false
        if (this.receivers.has(r)) this.pump(r)
      })
    }
    return false
  }
}
