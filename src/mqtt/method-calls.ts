// Direct methods (direct-methods.md): in flight only, so they live on the edge. A call goes to the
// device's connection (over MQTT on `$iothub/methods/POST/{name}/?$rid={rid}`, QoS 0; over AMQP on
// its methods link) and completes when the device answers with the same rid, or fails with 404103 when the
// device is not online (after connectTimeout) and 504101 when it does not answer in time.
import { HubError } from '../rest/hub-error.js'
import { splitIdentityKey } from '../shard-protocol.js'
import { jsonDeeperThan, MAX_JSON_DEPTH } from '../json-depth.js'

export const MAX_METHOD_PAYLOAD_BYTES = 128 * 1024
/** Calls waiting for one device's answers; Azure's limit (403800) is undocumented. */
export const MAX_INFLIGHT_PER_DEVICE = 1000

export interface MethodTarget {
  readonly id: number
  readonly deviceId: string
  /** sends the call to the device in its protocol's form */
  request(methodName: string, rid: string, payload: Buffer): void
}

export interface MethodResult { status: number; payload: unknown }

interface Pending {
  deviceId: string
  connId: number
  resolve(r: MethodResult): void
  reject(e: Error): void
  timer: NodeJS.Timeout
}

export class MethodCalls {
  private nextRid = 1
  private readonly pending = new Map<string, Pending>()
  private readonly perDevice = new Map<string, number>()

  constructor(
    /** the device's live connection when it is subscribed to `$iothub/methods/POST/#` (or has a methods link) */
    private readonly target: (deviceId: string) => MethodTarget | undefined,
  ) {}

  get inFlight(): number { return this.pending.size }

  async invoke(deviceId: string, methodName: string, payload: Buffer, responseTimeoutMs: number, connectTimeoutMs: number): Promise<MethodResult> {
    let conn = this.target(deviceId)
    if (!conn && connectTimeoutMs > 0) {
      const deadline = Date.now() + connectTimeoutMs
      while (!conn && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))))
        conn = this.target(deviceId)
      }
    }
    // deviceId is a device's id or a module's `{device}/{module}` key
    const identity = splitIdentityKey(deviceId)
    const whom = identity.moduleId === undefined ? `device ${deviceId}` : `module ${identity.moduleId} of device ${identity.deviceId}`
    const who = whom[0]!.toUpperCase() + whom.slice(1)
    if (!conn) throw new HubError(404103, `${who} is not online, or not subscribed to direct methods`)
    const count = this.perDevice.get(deviceId) ?? 0
    if (count >= MAX_INFLIGHT_PER_DEVICE) throw new HubError(403800, `${who} already has ${count} method calls in flight`)
    const rid = (this.nextRid++).toString(16)
    this.perDevice.set(deviceId, count + 1)
    const target = conn
    return new Promise<MethodResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.settle(rid)) reject(new HubError(504101, `Timed out waiting for the response from ${whom} to method ${methodName}`))
      }, responseTimeoutMs)
      timer.unref()
      this.pending.set(rid, { deviceId, connId: target.id, resolve, reject, timer })
      target.request(methodName, rid, payload)
    })
  }

  private settle(rid: string): Pending | undefined {
    const p = this.pending.get(rid)
    if (!p) return undefined
    this.pending.delete(rid)
    clearTimeout(p.timer)
    const n = (this.perDevice.get(p.deviceId) ?? 1) - 1
    if (n <= 0) this.perDevice.delete(p.deviceId)
    else this.perDevice.set(p.deviceId, n)
    return p
  }

  /**
   * The device answered. Only the device the call went to can answer it; a late or unknown $rid is
   * dropped, as Azure does. Returns false when the answer was not acceptable (bad JSON, too large).
   */
  response(deviceId: string, rid: string, status: number, body: Buffer): boolean {
    const p = this.pending.get(rid)
    if (!p || p.deviceId !== deviceId) return true
    this.settle(rid)
    if (body.length > MAX_METHOD_PAYLOAD_BYTES) {
      p.reject(new HubError(413001, `the device's response of ${body.length} bytes exceeds ${MAX_METHOD_PAYLOAD_BYTES}`))
      return false
    }
    let payload: unknown = null
    if (jsonDeeperThan(body)) {
      p.reject(new HubError(400004, `the device's response nests deeper than ${MAX_JSON_DEPTH} levels`))
      return false
    }
    if (body.length > 0) {
      try {
        payload = JSON.parse(body.toString('utf8'))
      } catch {
        p.reject(new HubError(400012, 'the device\'s response is not valid JSON'))
        return false
      }
    }
    p.resolve({ status, payload })
    return true
  }
}
