// Changes to one identity run one after another, so each checks its etag against the latest
// committed version; changes to different identities run side by side.
export class SerializedChanges {
  private readonly changing = new Map<string, Promise<unknown>>()

  /** Runs `change` after any earlier change of the same key has settled. */
  async run<T>(key: string, change: () => Promise<T>): Promise<T> {
    const run = (this.changing.get(key) ?? Promise.resolve()).catch(() => {}).then(change)
    this.changing.set(key, run)
    try {
      return await run
    } finally {
      if (this.changing.get(key) === run) this.changing.delete(key)
    }
  }
}
