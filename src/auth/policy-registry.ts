// The hub's shared access policies as a control-plane resource: listed, created, changed, their keys
// regenerated, deleted. A change is committed before it is answered, takes effect for the next
// token at once, and is announced so that connections holding a token the change revoked close.
import { HubError } from '../rest/hub-error.js'
import { SerializedChanges } from '../registry/serialized-changes.js'
import { generateKey, OWNER_POLICY, type AccessPolicy, type Right } from './policies.js'

/** Azure's limits: 16 policies per hub, of which at most 10 grant ServiceConnect (auth.md). */
export const MAX_POLICIES = 16
export const MAX_SERVICE_POLICIES = 10
const RIGHTS: readonly Right[] = ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect']
/** Policy names as SAS tokens carry them in `skn`: up to 64 characters, none that needs escaping in a connection string. */
const NAME = /^[A-Za-z0-9._-]{1,64}$/
/** Keys as the hub issues them (32 random bytes) or as a caller supplies them: base64 of 16 to 64 bytes. */
const KEY = /^[A-Za-z0-9+/]{22,86}={0,2}$/

export type KeyType = 'PrimaryKey' | 'SecondaryKey'

export interface PolicyChange {
  keyName: string
  /** what replaced the policy; absent when it was deleted */
  now?: AccessPolicy
}

export interface PolicyInput {
  rights?: unknown
  primaryKey?: unknown
  secondaryKey?: unknown
}

/** `"RegistryRead, ServiceConnect"` (ARM's form) or an array of names: the rights, or 400004. */
export function parseRights(value: unknown): Right[] {
  const names = typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value
  if (!Array.isArray(names) || names.length === 0) throw new HubError(400004, `rights must name at least one of ${RIGHTS.join(', ')}`)
  const rights = new Set<Right>()
  for (const n of names) {
    const right = RIGHTS.find((r) => typeof n === 'string' && r.toLowerCase() === n.toLowerCase())
    if (!right) throw new HubError(400004, `rights: '${String(n)}' is not one of ${RIGHTS.join(', ')}`)
    rights.add(right)
  }
  return RIGHTS.filter((r) => rights.has(r))
}

function parseKey(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string' || !KEY.test(value)) throw new HubError(400004, `${field} must be base64 of 16 to 64 bytes`)
  return value
}

export class PolicyRegistry {
  private readonly byName = new Map<string, AccessPolicy>()
  private readonly listeners: ((change: PolicyChange) => void)[] = []
  /** one change at a time: each reads the state the previous one committed */
  private readonly changes = new SerializedChanges()

  constructor(policies: readonly AccessPolicy[], private readonly save: (all: AccessPolicy[]) => Promise<void> = async () => {}) {
    for (const p of policies) this.byName.set(p.keyName, p)
  }

  get(name: string): AccessPolicy | undefined { return this.byName.get(name) }
  list(): AccessPolicy[] { return [...this.byName.values()] }

  /** Called after every committed change (a listener that throws does not undo it). */
  onChange(listener: (change: PolicyChange) => void): void { this.listeners.push(listener) }

  /** Creates a policy, or changes an existing one's rights or keys; keys not given are generated (new) or kept (existing). */
  put(name: string, input: PolicyInput): Promise<{ policy: AccessPolicy; created: boolean }> {
    return this.serially(async () => {
      if (!NAME.test(name)) throw new HubError(400004, `policy name '${name}' must be 1 to 64 letters, digits, '.', '_' or '-'`)
      const rights = parseRights(input.rights)
      const primaryKey = parseKey(input.primaryKey, 'primaryKey')
      const secondaryKey = parseKey(input.secondaryKey, 'secondaryKey')
      const old = this.byName.get(name)
      if (name === OWNER_POLICY && rights.length !== RIGHTS.length) throw new HubError(400004, `${OWNER_POLICY} keeps every right: the hub's configuration is managed with it`)
      if (!old && this.byName.size >= MAX_POLICIES) throw new HubError(400004, `a hub has at most ${MAX_POLICIES} shared access policies`)
      const services = this.list().filter((p) => p.keyName !== name && p.rights.includes('ServiceConnect')).length
      if (rights.includes('ServiceConnect') && services >= MAX_SERVICE_POLICIES) throw new HubError(400004, `at most ${MAX_SERVICE_POLICIES} shared access policies may grant ServiceConnect`)
      const policy: AccessPolicy = {
        keyName: name, rights,
        primaryKey: primaryKey ?? old?.primaryKey ?? generateKey(),
        secondaryKey: secondaryKey ?? old?.secondaryKey ?? generateKey(),
      }
      await this.commit(name, policy)
      return { policy, created: !old }
    })
  }

  /** Replaces one key with a new random one; tokens signed with the old key stop working. */
  regenerate(name: string, keyType: unknown): Promise<AccessPolicy> {
    return this.serially(async () => {
      const old = this.require(name)
      if (keyType !== 'PrimaryKey' && keyType !== 'SecondaryKey') throw new HubError(400004, `keyType must be "PrimaryKey" or "SecondaryKey"`)
      const policy = { ...old, ...(keyType === 'PrimaryKey' ? { primaryKey: generateKey() } : { secondaryKey: generateKey() }) }
      await this.commit(name, policy)
      return policy
    })
  }

  delete(name: string): Promise<void> {
    return this.serially(async () => {
      this.require(name)
      if (name === OWNER_POLICY) throw new HubError(400004, `${OWNER_POLICY} cannot be deleted: the hub's configuration is managed with it`)
      await this.commit(name, undefined)
    })
  }

  private require(name: string): AccessPolicy {
    const p = this.byName.get(name)
    if (!p) throw new HubError(404000, `shared access policy '${name}' does not exist`)
    return p
  }

  private async commit(name: string, policy: AccessPolicy | undefined): Promise<void> {
    const next = this.list().filter((p) => p.keyName !== name)
    if (policy) next.push(policy)
    // stored first: a failed write leaves the policies as they were
    await this.save(next)
    if (policy) this.byName.set(name, policy)
    else this.byName.delete(name)
    for (const l of this.listeners) l({ keyName: name, ...(policy ? { now: policy } : {}) })
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    return this.changes.run('all', work)
  }
}

/** A policy as the control plane shows it: ARM's `SharedAccessSignatureAuthorizationRule`. */
export function policyJson(p: AccessPolicy): { keyName: string; primaryKey: string; secondaryKey: string; rights: string } {
  return { keyName: p.keyName, primaryKey: p.primaryKey, secondaryKey: p.secondaryKey, rights: p.rights.join(', ') }
}
