// MQTT sessions of the devices this shard owns. A clean-session-0 session keeps its subscriptions
// in LMDB across reconnects and restarts: the official SDK reconnects to renew its token and does
// not subscribe again. Every change returns the write it made: CONNACK, SUBACK and UNSUBACK wait
// for it, so what they promise survives a crash.
import type { Database } from 'lmdb'

export interface Session {
  clean: boolean
  /** topic filter → granted QoS */
  subscriptions: Record<string, number>
  /** the device identity the session belongs to: a new device under an old id starts afresh */
  generationId?: string
}

const DONE: Promise<unknown> = Promise.resolve()

export class SessionStore {
  private readonly live = new Map<string, Session>()
  /** each client's writes, one after the other: a CONNACK that resumes a session waits for the last one */
  private readonly writing = new Map<string, Promise<unknown>>()

  constructor(private readonly db: Database) {}

  /** Opens (or resumes) the client's session; `present` is CONNACK's session-present flag. */
  open(clientId: string, clean: boolean, generationId: string): { present: boolean; written: Promise<unknown> } {
    let stored = this.live.get(clientId) ?? (this.db.get(clientId) as Session | undefined)
    if (stored?.generationId !== undefined && stored.generationId !== generationId) stored = undefined
    if (clean) {
      // a write still on its way (a previous connection's session) must not land after this removal
      const mayBeStored = this.writing.has(clientId) || this.db.doesExist(clientId)
      this.live.set(clientId, { clean: true, subscriptions: {}, generationId })
      return { present: false, written: mayBeStored ? this.write(clientId, () => this.db.remove(clientId)) : DONE }
    }
    if (stored && !stored.clean) {
      this.live.set(clientId, stored)
      // present only once what is in memory is stored
      return { present: true, written: this.writing.get(clientId) ?? DONE }
    }
    const fresh: Session = { clean: false, subscriptions: {}, generationId }
    this.live.set(clientId, fresh)
    return { present: false, written: this.write(clientId, () => this.db.put(clientId, fresh)) }
  }

  get(clientId: string): Session | undefined { return this.live.get(clientId) }

  subscribe(clientId: string, filters: [string, number][]): Promise<unknown> {
    const s = this.live.get(clientId)
    if (!s) return DONE
    for (const [filter, qos] of filters) s.subscriptions[filter] = qos
    return s.clean || filters.length === 0 ? DONE : this.write(clientId, () => this.db.put(clientId, s))
  }

  unsubscribe(clientId: string, filters: string[]): Promise<unknown> {
    const s = this.live.get(clientId)
    if (!s) return DONE
    for (const f of filters) delete s.subscriptions[f]
    return s.clean ? DONE : this.write(clientId, () => this.db.put(clientId, s))
  }

  /** A clean session ends with its connection. */
  end(clientId: string): void {
    const s = this.live.get(clientId)
    if (s?.clean) this.live.delete(clientId)
  }

  /** The device was deleted: its session goes with it. */
  remove(clientId: string): Promise<unknown> {
    this.live.delete(clientId)
    return this.db.doesExist(clientId) ? this.write(clientId, () => this.db.remove(clientId)) : DONE
  }

  /**
   * Runs after the client's earlier writes. A failed write leaves memory ahead of the store: the
   * session is forgotten so the next open reads what is stored.
   */
  private write(clientId: string, op: () => Promise<unknown>): Promise<unknown> {
    const run = (this.writing.get(clientId) ?? DONE).catch(() => {}).then(op).catch((e: unknown) => {
      this.live.delete(clientId)
      throw e
    })
    this.writing.set(clientId, run)
    const settled = () => { if (this.writing.get(clientId) === run) this.writing.delete(clientId) }
    run.then(settled, settled)
    return run
  }
}
