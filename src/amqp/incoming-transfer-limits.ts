// rhea reassembles a message sent in several transfer frames with no limit on its size. For the
// connections registered here, its session's transfer handler detaches a link whose message grows
// past the limit, with amqp:link:message-size-exceeded, frees what it held and drops what follows on
// that link. rhea has no hook for this, so Session.prototype.on_transfer is wrapped once.
import { createRequire } from 'node:module'
import type rhea from 'rhea'

interface TransferFrame {
  performative: { handle: number; more?: boolean }
  payload?: Buffer
}

interface RheaReceiver {
  _incomplete?: { frames?: Buffer[]; settled: boolean }
  close(error: rhea.AmqpError): void
}

interface RheaSession {
  connection: object
  incoming: { next_transfer_id: number }
  _get_link(frame: TransferFrame): RheaReceiver
  on_transfer(frame: TransferFrame): void
}

interface Progress { bytes: number; isRefused: boolean }

const maxMessageBytesOf = new WeakMap<object, number>()
const progressOf = new WeakMap<RheaReceiver, Progress>()
let isInstalled = false

/** Holds `connection` to messages of at most `maxMessageBytes`. */
export function limitIncomingTransfers(connection: rhea.Connection, maxMessageBytes: number): void {
  install()
  maxMessageBytesOf.set(connection, maxMessageBytes)
}

function install(): void {
  if (isInstalled) return
  isInstalled = true
  const require = createRequire(import.meta.url)
  const Session = require('rhea/lib/session.js') as { prototype: RheaSession }
  const onTransfer = Session.prototype.on_transfer
  Session.prototype.on_transfer = function (this: RheaSession, frame: TransferFrame): void {
    const limit = maxMessageBytesOf.get(this.connection)
    if (limit === undefined) return onTransfer.call(this, frame)
    const link = this._get_link(frame) // throws on an unknown handle, as rhea does
    let progress = progressOf.get(link)
    if (!progress) progressOf.set(link, (progress = { bytes: 0, isRefused: false }))
    // the peer may send more on the link before it reads our detach
    if (progress.isRefused) return consume(this)
    const bytes = (link._incomplete ? progress.bytes : 0) + (frame.payload?.length ?? 0)
    if (bytes > limit) return refuse(this, link, progress, limit)
    progress.bytes = frame.performative.more ? bytes : 0
    onTransfer.call(this, frame)
  }
}

/** The frame is taken off the session's transfer count, as rhea would, and dropped. */
function consume(session: RheaSession): void {
  session.incoming.next_transfer_id++
}

function refuse(session: RheaSession, link: RheaReceiver, progress: Progress, limit: number): void {
  consume(session)
  progress.isRefused = true
  progress.bytes = 0
  const partial = link._incomplete
  if (partial) {
    // what rhea does for a delivery cut short by a detach, and the frames it holds go now
    partial.frames = []
    partial.settled = true
    link._incomplete = undefined
  }
  link.close({ condition: 'amqp:link:message-size-exceeded', description: `a message may be at most ${limit} bytes` })
}
