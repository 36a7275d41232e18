// Hub-level shared access policies with Azure's defaults and rights.
import { randomBytes } from 'node:crypto'

export type Right = 'RegistryRead' | 'RegistryWrite' | 'ServiceConnect' | 'DeviceConnect'

/**
 * What a service route needs: a right of the caller's policy, or `ControlPlane`: hub configuration
 * (routing, endpoints, enrichments, consumer groups) that Azure manages through ARM, out of reach of
 * every SAS policy. Here only the owner policy may do it; no registry right grants it.
 */
export type Permission = Right | 'ControlPlane'
export const OWNER_POLICY = 'iothubowner'

export interface AccessPolicy {
  keyName: string
  primaryKey: string
  secondaryKey: string
  rights: Right[]
}

export const DEFAULT_POLICY_RIGHTS: Record<string, Right[]> = {
  iothubowner: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'],
  service: ['ServiceConnect'],
  device: ['DeviceConnect'],
  registryRead: ['RegistryRead'],
  registryReadWrite: ['RegistryRead', 'RegistryWrite'],
}

export function generateKey(bytes = 32): string {
  return randomBytes(bytes).toString('base64')
}

export function createDefaultPolicies(): AccessPolicy[] {
  return Object.entries(DEFAULT_POLICY_RIGHTS).map(([keyName, rights]) => ({
    keyName, rights, primaryKey: generateKey(), secondaryKey: generateKey(),
  }))
}

/** RegistryWrite implies RegistryRead, as in Azure; ControlPlane is the owner policy's alone. */
export function hasRight(policy: AccessPolicy, right: Permission): boolean {
  if (right === 'ControlPlane') return policy.keyName === OWNER_POLICY
  return policy.rights.includes(right) || (right === 'RegistryRead' && policy.rights.includes('RegistryWrite'))
}

export function serviceConnectionString(hostName: string, policy: AccessPolicy): string {
  return `HostName=${hostName};SharedAccessKeyName=${policy.keyName};SharedAccessKey=${policy.primaryKey}`
}
