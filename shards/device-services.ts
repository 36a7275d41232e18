// The shard's side of twins and cloud-to-device messages: which connection serves which device,
// the device's twin requests over MQTT, the service's requests (OP_REQUEST → OP_REPLY), desired
// property pushes and C2D delivery. Replies and pushes leave only after LMDB committed the change.
import { OP_PUBLISH, OP_REPLY, splitIdentityKey } from '../src/shard-protocol.js'
import { HubError, deviceErrorBody } from '../src/rest/hub-error.js'
import { c2dFilter, desiredPatchTopic, TWIN_DESIRED_FILTER, twinResponseTopic } from '../src/mqtt/iothub-topics.js'
import type { C2dQueues, C2dSend } from './c2d-queue.js'
import type { C2dOutcome } from '../src/edge/edge-connection.js'
import type { SessionStore } from './session-store.js'
import type { ConfigurationStatuses, TwinDoc, TwinStore } from './twin-store.js'
import { twinChangeBody, twinSnapshot, type HubEventSink } from './twin-events.js'
import type { WriteHealth } from '../src/store/write-health.js'

const EMPTY = new Uint8Array(0)

export class DeviceServices {
  private readonly byConn = new Map<number, { clientId: string; deviceId: string }>()
  private readonly connOfDevice = new Map<string, number>()
  private readonly inFlight = new Set<Promise<unknown>>()

  constructor(
    private readonly sessions: SessionStore,
    private readonly twins: TwinStore,
    private readonly c2d: C2dQueues,
    private readonly emit: (op: unknown[]) => void,
    /** routed twin change and lifecycle events (built only when a route wants them) */
    private readonly events: HubEventSink = { wants: () => false, emit: () => {} },
    /** writes refused while the store cannot take them */
    private readonly health?: WriteHealth,
  ) {}

  /** A write that failed: the health gate learns of it, the caller gets server busy. */
  private writeError(e: unknown): HubError {
    if (e instanceof HubError) return e
    this.health?.failed(e)
    return this.health?.error() ?? new HubError(500001, `store failed: ${(e as Error)?.message}`)
  }

  private subscribed(clientId: string, filter: string): boolean {
    return this.sessions.get(clientId)?.subscriptions[filter] !== undefined
  }

  opened(connId: number, clientId: string, deviceId: string): void {
    this.byConn.set(connId, { clientId, deviceId })
    this.connOfDevice.set(deviceId, connId)
    if (this.subscribed(clientId, c2dFilter(deviceId))) this.c2d.attach(deviceId, connId)
  }

  /** The device, and whether this was its current connection (not one a newer connection took over). */
  closed(connId: number): { deviceId: string; current: boolean } | undefined {
    const b = this.byConn.get(connId)
    if (!b) return undefined
    this.byConn.delete(connId)
    const current = this.connOfDevice.get(b.deviceId) === connId
    if (current) this.connOfDevice.delete(b.deviceId)
    this.c2d.detach(connId)
    return { deviceId: b.deviceId, current }
  }

  subscriptionsChanged(clientId: string): void {
    // the client id is the device id, or a module's `{device}/{module}` key (modules have no C2D queue)
    const connId = this.connOfDevice.get(clientId)
    if (connId === undefined) return
    if (this.subscribed(clientId, c2dFilter(clientId))) this.c2d.attach(clientId, connId)
    else this.c2d.detach(connId)
  }

  /** Registry change: a twin for a new device (or a new generation), everything dropped on delete. */
  deviceChanged(deviceId: string, generationId: string | null, created = false): void {
    if (generationId === null) {
      const doc = this.events.wants('DeviceLifecycleEvents') ? this.twins.get(deviceId) : undefined
      // the twin, the queue and the persistent session go with the device (module ids would share its prefix)
      this.track(this.twins.remove(deviceId))
      this.track(this.c2d.purge(deviceId, false))
      this.track(this.sessions.remove(deviceId))
      if (doc) this.lifecycle(doc, 'deleteDeviceIdentity')
    } else {
      const w = this.twins.ensure(deviceId, generationId)
      if (w) this.track(w)
      const module = deviceId.includes('/')
      if (created && this.events.wants('DeviceLifecycleEvents')) this.lifecycle(this.twins.get(deviceId), module ? 'createModuleIdentity' : 'createDeviceIdentity')
    }
  }

  /** A module was deleted: its twin and session go (awaited by the DELETE), with its lifecycle event. */
  private moduleRemoved(key: string): Promise<unknown> {
    const doc = this.events.wants('DeviceLifecycleEvents') ? this.twins.get(key) : undefined
    return Promise.all([this.twins.remove(key), this.sessions.remove(key)]).then(() => { if (doc) this.lifecycle(doc, 'deleteModuleIdentity') })
  }

  private lifecycle(doc: TwinDoc, opType: string): void {
    this.events.emit({
      source: 'DeviceLifecycleEvents', ...splitIdentityKey(doc.deviceId), generationId: doc.generationId ?? '', opType,
      schema: 'deviceLifecycleNotification', body: twinSnapshot(this.twins, doc),
    })
  }

  private twinChanged(doc: TwinDoc, opType: 'updateTwin' | 'replaceTwin', body: unknown): void {
    this.events.emit({ source: 'TwinChangeEvents', ...splitIdentityKey(doc.deviceId), generationId: doc.generationId ?? '', opType, schema: 'twinChangeNotification', body })
  }

  private track(p: Promise<unknown>): void {
    const t = p.catch((e: unknown) => { this.writeError(e) }).finally(() => this.inFlight.delete(t))
    this.inFlight.add(t)
  }

  async drained(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight)
  }

  private publish(connId: number, topic: string, body: string | Uint8Array): void {
    this.emit([OP_PUBLISH, connId, topic, typeof body === 'string' ? Buffer.from(body) : body, 0, 0, false])
  }

  /** `$iothub/twin/GET` and `$iothub/twin/PATCH/properties/reported` from a device. */
  twinFromDevice(connId: number, kind: 'get' | 'patch', rid: string, payload: Uint8Array): void {
    const b = this.byConn.get(connId)
    if (!b) return
    const fail = (e: unknown) => {
      const err = e instanceof HubError ? e : new HubError(500001, 'internal error')
      this.publish(connId, twinResponseTopic(err.status, rid), deviceErrorBody(err))
    }
    try {
      if (kind === 'get') {
        const doc = this.twins.read(b.deviceId)
        this.publish(connId, twinResponseTopic(200, rid), JSON.stringify(this.twins.deviceView(doc)))
        return
      }
      this.health?.check()
      let patch: unknown
      try {
        patch = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
      } catch {
        throw new HubError(400012, 'the reported properties patch is not valid JSON')
      }
      const { doc, written } = this.twins.patchReported(b.deviceId, patch)
      this.track(written.then(
        () => {
          this.publish(connId, twinResponseTopic(204, rid, doc.reported.$version), EMPTY)
          if (this.events.wants('TwinChangeEvents')) this.twinChanged(doc, 'updateTwin', twinChangeBody(doc, { reported: patch as Record<string, unknown> }))
        },
        (e: unknown) => fail(this.writeError(e)),
      ))
    } catch (e) {
      fail(e)
    }
  }

  /** A service call (REST on the main thread); the answer goes back as OP_REPLY. */
  request(requestId: number, kind: string, deviceId: string, args: unknown[]): void {
    const reply = (result: unknown) => this.emit([OP_REPLY, requestId, 0, result ?? null])
    const fail = (e: unknown) => {
      const err = e instanceof HubError ? e : new HubError(500001, `internal error: ${(e as Error)?.message}`)
      this.emit([OP_REPLY, requestId, err.code, err.message])
    }
    try {
      switch (kind) {
        case 'twin.get':
          return reply(this.twins.core(this.twins.read(deviceId)))
        case 'twin.update': {
          this.health?.check()
          // jobId: set by a scheduled job (its patch is applied once per twin)
          const [mode, body, ifMatch, jobId] = args as ['patch' | 'replace', unknown, string | null, string | undefined]
          const before = this.twins.get(deviceId)
          const { doc, written, desiredPush } = this.twins.updateFromService(deviceId, mode, body, ifMatch ?? undefined, jobId)
          this.track(written.then(() => {
            reply(this.twins.core(doc))
            if (desiredPush) this.pushDesired(deviceId, desiredPush)
            if (doc !== before && this.events.wants('TwinChangeEvents')) {
              const b = body as { tags?: Record<string, unknown>; properties?: { desired?: Record<string, unknown> } }
              this.twinChanged(doc, mode === 'patch' ? 'updateTwin' : 'replaceTwin', mode === 'patch'
                ? twinChangeBody(doc, { tags: b.tags ?? undefined, desired: b.properties?.desired ?? undefined })
                : twinSnapshot(this.twins, doc))
            }
          }, (e: unknown) => fail(this.writeError(e))))
          return
        }
        case 'twin.configure': {
          this.health?.check()
          const [patch, statuses] = args as [Record<string, unknown> | null, ConfigurationStatuses | null]
          const { doc, written, desiredPush } = this.twins.configure(deviceId, patch, statuses)
          this.track(written.then(() => {
            reply(null)
            if (desiredPush) this.pushDesired(deviceId, desiredPush)
            if (doc && patch && this.events.wants('TwinChangeEvents')) this.twinChanged(doc, 'updateTwin', twinChangeBody(doc, { desired: patch }))
          }, (e: unknown) => fail(this.writeError(e))))
          return
        }
        case 'module.remove':
          // a module's twin and session, gone with its module (a device's go with OP_DEVICE_CHANGED)
          this.track(this.moduleRemoved(deviceId).then(() => reply(null), (e: unknown) => fail(this.writeError(e))))
          return
        case 'c2d.send': {
          this.health?.check()
          const [generationId, msg] = args as [string, C2dSend]
          this.track(this.c2d.send(deviceId, generationId, msg).then(reply, (e: unknown) => fail(this.writeError(e))))
          return
        }
        case 'c2d.receive':
          this.track(this.c2d.receive(deviceId).then(reply, (e: unknown) => fail(this.writeError(e))))
          return
        case 'c2d.settle': {
          const [lockToken, outcome] = args as [string, C2dOutcome]
          this.track(this.c2d.settleLocked(deviceId, lockToken, outcome).then(reply, (e: unknown) => fail(this.writeError(e))))
          return
        }
        case 'c2d.purge': {
          this.health?.check()
          // answered once the removals are committed, so a purge that was reported cannot come back
          this.track(this.c2d.purge(deviceId).then(reply, (e: unknown) => fail(this.writeError(e))))
          return
        }
        default:
          throw new HubError(400004, `unknown request ${kind}`)
      }
    } catch (e) {
      fail(e)
    }
  }

  /** Desired-property changes go to the device if it is connected and subscribed (not queued, as in Azure). */
  private pushDesired(deviceId: string, patch: Record<string, unknown>): void {
    const connId = this.connOfDevice.get(deviceId)
    const b = connId === undefined ? undefined : this.byConn.get(connId)
    if (!b || !this.subscribed(b.clientId, TWIN_DESIRED_FILTER)) return
    this.publish(connId!, desiredPatchTopic(patch.$version as number), JSON.stringify(patch))
  }
}
