// MQTT sessions of the devices this shard owns. A clean-session-0 session keeps its subscriptions
// in LMDB across reconnects and restarts: the official SDK reconnects to renew its token and does
// not subscribe again.
import type { Database } from 'lmdb'

export interface Session {
  clean: boolean
  /** topic filter → granted QoS */
  subscriptions: Record<string, number>
}

export class SessionStore {
  private readonly live = new Map<string, Session>()

  constructor(private readonly db: Database) {}

  /** Returns whether a stored session was resumed (CONNACK session-present). */
  open(clientId: string, clean: boolean): boolean {
    const stored = this.live.get(clientId) ?? (this.db.get(clientId) as Session | undefined)
    if (clean) {
      if (stored) this.db.remove(clientId)
      this.live.set(clientId, { clean: true, subscriptions: {} })
      return false
    }
    if (stored && !stored.clean) {
      this.live.set(clientId, stored)
      return true
    }
    const fresh: Session = { clean: false, subscriptions: {} }
    this.live.set(clientId, fresh)
    this.db.put(clientId, fresh)
    return false
  }

  get(clientId: string): Session | undefined { return this.live.get(clientId) }

  subscribe(clientId: string, filters: [string, number][]): void {
    const s = this.live.get(clientId)
    if (!s) return
    for (const [filter, qos] of filters) s.subscriptions[filter] = qos
    if (!s.clean) this.db.put(clientId, s)
  }

  unsubscribe(clientId: string, filters: string[]): void {
    const s = this.live.get(clientId)
    if (!s) return
    for (const f of filters) delete s.subscriptions[f]
    if (!s.clean) this.db.put(clientId, s)
  }

  /** A clean session ends with its connection. */
  end(clientId: string): void {
    const s = this.live.get(clientId)
    if (s?.clean) this.live.delete(clientId)
  }
}
