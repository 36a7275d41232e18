// JetStream answers nothing for a few seconds while its cluster elects a leader (a node died or came
// back): a request then times out or finds too few peers. Opening a stream or bucket waits that out,
// bounded; what still fails after the deadline is the caller's error.
export async function untilAvailable<T>(what: string, attempt: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await attempt()
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: JetStream did not answer in ${timeoutMs} ms (${(e as Error).message})`, { cause: e })
      await new Promise((r) => setTimeout(r, 250))
    }
  }
}
