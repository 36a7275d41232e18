// Faults a team injects to test its retry logic against the answers Azure gives when unhealthy: for
// one device, one protocol or the whole hub, for a stated time, the hub throttles (429001), is busy
// (503005), drops connections (and refuses new ones), or delays acknowledgements. Nothing here runs
// on the hot path while no fault is active.
import type { Clock } from './clock.js'

export const FAULT_KINDS = ['throttle', 'server-busy', 'drop-connections', 'delay-acks'] as const
export type FaultKind = (typeof FAULT_KINDS)[number]
export const FAULT_PROTOCOLS = ['mqtt', 'amqp', 'rest'] as const
export type FaultProtocol = (typeof FAULT_PROTOCOLS)[number]

export interface Fault {
  id: number
  kind: FaultKind
  /** only this device (REST: routes naming it) */
  deviceId?: string
  /** only this protocol */
  protocol?: FaultProtocol
  /** delay-acks: how long each acknowledgement waits */
  delayMs?: number
  /** when it ends, ISO time */
  until: string
}

/** Faults at once at most: each is checked per operation while any is active. */
export const MAX_FAULTS = 100
const MAX_SECONDS = 3600
const MAX_DELAY_MS = 60_000

export class FaultError extends Error {}

interface ActiveFault extends Fault { untilMs: number }

export class FaultInjector {
  private faults: ActiveFault[] = []
  private nextId = 1

  /** told of every fault added or removed (I/O threads keep a copy) */
  onChange: () => void = () => {}

  constructor(private readonly clock: Clock) {}

  /** The active faults with their end on the wall clock, for a copy kept on another thread. */
  snapshot(): Fault[] {
    this.expire()
    const now = this.clock.now()
    return this.faults.map((f) => ({ ...publicView(f), until: new Date(Date.now() + (f.untilMs - now)).toISOString() }))
  }

  /** Whether any fault may apply (one comparison on the hot path). */
  get active(): boolean {
    if (this.faults.length === 0) return false
    this.expire()
    return this.faults.length > 0
  }

  add(spec: { kind?: unknown; deviceId?: unknown; protocol?: unknown; seconds?: unknown; delayMs?: unknown }): Fault {
    if (!FAULT_KINDS.includes(spec.kind as FaultKind)) throw new FaultError(`kind must be one of ${FAULT_KINDS.join(', ')}, not ${String(spec.kind)}`)
    if (spec.protocol !== undefined && !FAULT_PROTOCOLS.includes(spec.protocol as FaultProtocol)) throw new FaultError(`protocol must be one of ${FAULT_PROTOCOLS.join(', ')}, not ${String(spec.protocol)}`)
    if (spec.deviceId !== undefined && (typeof spec.deviceId !== 'string' || spec.deviceId === '')) throw new FaultError('deviceId must be a device id')
    const seconds = spec.seconds
    if (typeof seconds !== 'number' || !(seconds > 0) || seconds > MAX_SECONDS) throw new FaultError(`seconds must be a number from 0 to ${MAX_SECONDS}`)
    const kind = spec.kind as FaultKind
    if (kind === 'delay-acks' && (typeof spec.delayMs !== 'number' || !(spec.delayMs > 0) || spec.delayMs > MAX_DELAY_MS)) {
      throw new FaultError(`delay-acks needs delayMs, a number from 0 to ${MAX_DELAY_MS}`)
    }
    this.expire()
    if (this.faults.length >= MAX_FAULTS) throw new FaultError(`at most ${MAX_FAULTS} faults at once; remove one first`)
    const untilMs = this.clock.now() + seconds * 1000
    const f: ActiveFault = {
      id: this.nextId++, kind, untilMs, until: new Date(untilMs).toISOString(),
      ...(spec.deviceId !== undefined ? { deviceId: spec.deviceId as string } : {}),
      ...(spec.protocol !== undefined ? { protocol: spec.protocol as FaultProtocol } : {}),
      ...(kind === 'delay-acks' ? { delayMs: spec.delayMs as number } : {}),
    }
    this.faults.push(f)
    this.onChange()
    return publicView(f)
  }

  remove(id: number): boolean {
    const before = this.faults.length
    this.faults = this.faults.filter((f) => f.id !== id)
    this.onChange()
    return this.faults.length < before
  }

  list(): Fault[] {
    this.expire()
    return this.faults.map(publicView)
  }

  /** Replaces every fault with `list` (an I/O thread's copy of the main thread's faults). */
  restore(list: readonly Fault[]): void {
    this.faults = list.map((f) => ({ ...f, untilMs: Date.parse(f.until) }))
  }

  /** The first active fault of `kind` that covers this device and protocol. */
  find(kind: FaultKind, protocol: FaultProtocol, deviceId: string | undefined): Fault | undefined {
    if (!this.active) return undefined
    return this.faults.find((f) => f.kind === kind && (f.protocol === undefined || f.protocol === protocol)
      && (f.deviceId === undefined || f.deviceId === deviceId))
  }

  private expire(): void {
    const now = this.clock.now()
    if (this.faults.some((f) => f.untilMs <= now)) this.faults = this.faults.filter((f) => f.untilMs > now)
  }
}

function publicView(f: ActiveFault): Fault {
  const { untilMs: _untilMs, ...rest } = f
  return rest
}

/** The protocol a device connection's transport belongs to. */
export function protocolOf(transportKind: string): FaultProtocol {
  return transportKind.startsWith('amqp') ? 'amqp' : 'mqtt'
}
