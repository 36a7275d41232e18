// A throwaway LMDB store for tests of the stores themselves, and a read of its committed state.
import { rmSync } from 'node:fs'
import { openHubStore, type HubStore } from '../../src/store/hub-store.js'
import { tempDir } from './test-hub.js'

export interface TempStore {
  store: HubStore
  /** What another process would read now: the committed state only. */
  committed<T>(read: () => T): T
  close(): Promise<void>
}

export function tempStore(): TempStore {
  const dir = tempDir()
  const store = openHubStore(dir)
  return {
    store,
    committed: (read) => {
      store.root.resetReadTxn()
      return read()
    },
    close: async () => {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
