// The shard's side of twins and cloud-to-device messages: which connection serves which device,
// the device's twin requests over MQTT, the service's requests (OP_REQUEST → OP_REPLY), desired
// property pushes and C2D delivery. Replies and pushes leave only after LMDB committed the change.
import { OP_PUBLISH, OP_REPLY } from '../src/shard-protocol.js'
import { HubError, deviceErrorBody } from '../src/rest/hub-error.js'
import { c2dFilter, desiredPatchTopic, TWIN_DESIRED_FILTER, twinResponseTopic } from '../src/mqtt/iothub-topics.js'
import type { C2dQueues, C2dSend } from './c2d-queue.js'
import type { SessionStore } from './session-store.js'
import type { TwinStore } from './twin-store.js'

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
  ) {}

  private subscribed(clientId: string, filter: string): boolean {
    return this.sessions.get(clientId)?.subscriptions[filter] !== undefined
  }

  opened(connId: number, clientId: string, deviceId: string): void {
    this.byConn.set(connId, { clientId, deviceId })
    this.connOfDevice.set(deviceId, connId)
    if (this.subscribed(clientId, c2dFilter(deviceId))) this.c2d.attach(deviceId, connId)
  }

  closed(connId: number): void {
    const b = this.byConn.get(connId)
    if (!b) return
    this.byConn.delete(connId)
    if (this.connOfDevice.get(b.deviceId) === connId) this.connOfDevice.delete(b.deviceId)
    this.c2d.detach(connId)
  }

  subscriptionsChanged(clientId: string): void {
    // module identities are refused at CONNECT, so the client id is the device id
    const connId = this.connOfDevice.get(clientId)
    if (connId === undefined) return
    if (this.subscribed(clientId, c2dFilter(clientId))) this.c2d.attach(clientId, connId)
    else this.c2d.detach(connId)
  }

  /** Registry change: a twin for a new device (or a new generation), everything dropped on delete. */
  deviceChanged(deviceId: string, generationId: string | null): void {
    if (generationId === null) {
      this.track(this.twins.remove(deviceId))
      this.c2d.purge(deviceId, false)
    } else {
      const w = this.twins.ensure(deviceId, generationId)
      if (w) this.track(w)
    }
  }

  private track(p: Promise<unknown>): void {
    const t = p.catch(() => {}).finally(() => this.inFlight.delete(t))
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
        const doc = this.twins.get(b.deviceId)
        this.publish(connId, twinResponseTopic(200, rid), JSON.stringify(this.twins.deviceView(doc)))
        return
      }
      let patch: unknown
      try {
        patch = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
      } catch {
        throw new HubError(400012, 'the reported properties patch is not valid JSON')
      }
      const { doc, written } = this.twins.patchReported(b.deviceId, patch)
      this.track(written.then(
        () => this.publish(connId, twinResponseTopic(204, rid, doc.reported.$version), EMPTY),
        (e: Error) => fail(new HubError(500001, `store failed: ${e.message}`)),
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
          return reply(this.twins.core(this.twins.get(deviceId)))
        case 'twin.update': {
          const [mode, body, ifMatch] = args as ['patch' | 'replace', unknown, string | null]
          const { doc, written, desiredPush } = this.twins.updateFromService(deviceId, mode, body, ifMatch ?? undefined)
          this.track(written.then(() => {
            reply(this.twins.core(doc))
            if (desiredPush) this.pushDesired(deviceId, desiredPush)
          }, fail))
          return
        }
        case 'c2d.send': {
          const [generationId, msg] = args as [string, C2dSend]
          this.track(this.c2d.send(deviceId, generationId, msg).then(reply, fail))
          return
        }
        case 'c2d.purge':
          return reply(this.c2d.purge(deviceId))
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
