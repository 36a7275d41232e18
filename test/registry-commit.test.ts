// Issue 10 item 5: the registry shows a change only once it is committed. A PUT whose write fails
// answers 503 ServerBusy and leaves no device behind (one that could connect but was never stored),
// and changes to one device run one after another, so two PUTs with the same If-Match cannot both win.
import { rmSync } from 'node:fs'
import type { Database } from 'lmdb'
import { afterAll, describe, expect, it } from 'vitest'
import { DeviceRegistry, NEVER, type RegistryEvent } from '../src/registry/device-registry.js'
import { WriteHealth } from '../src/store/write-health.js'
import { openHubStore } from '../src/store/hub-store.js'
import { tempDir } from './helpers/test-hub.js'

const dir = tempDir()
const store = openHubStore(dir)
afterAll(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })
const presence = { connectionState: () => ({ connected: false, since: NEVER }), lastActivityTime: () => NEVER, cloudToDeviceMessageCount: () => 0 }

describe('registry writes', () => {
  it('a failed commit answers 503 ServerBusy and changes nothing', async () => {
    const failing = Object.create(store.devices) as Database
    failing.put = () => Promise.reject(new Error('Commit failed (see commitError for details)'))
    const health = new WriteHealth({ dataDir: dir, minFreeBytes: 0, name: 'test', report: () => {} })
    const registry = new DeviceRegistry(failing, presence, health)
    const seen: RegistryEvent[] = []
    registry.onChange((e) => seen.push(e))
    await expect(registry.put('never-stored', { deviceId: 'never-stored' }, undefined)).rejects.toMatchObject({ code: 503005 })
    expect(registry.get('never-stored')).toBeUndefined()
    expect(seen).toEqual([])
    // refused at once from now on, until the probe finds the disk writable again
    await expect(registry.put('next', { deviceId: 'next' }, undefined)).rejects.toThrow(/^the hub cannot store data right now \(Commit failed/)
    health.close()
  })

  it('runs two changes of one device one after the other: the second If-Match sees the first', async () => {
    const registry = new DeviceRegistry(store.devices, presence)
    const created = await registry.put('serial', { deviceId: 'serial' }, undefined)
    const results = await Promise.allSettled([
      registry.put('serial', { deviceId: 'serial', status: 'disabled' }, `"${created.etag}"`),
      registry.put('serial', { deviceId: 'serial', status: 'enabled' }, `"${created.etag}"`),
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected'])
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 412001 })
    expect(registry.get('serial')!.status).toBe('disabled')
  })
})
