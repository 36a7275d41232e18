// Free TCP ports on 127.0.0.1 for a child server that must be told its port up front (Azurite
// cannot report a port it chose itself back to us, and we want to keep the port across restarts).
import { createServer } from 'node:net'

const HOST = '127.0.0.1'

function listenOnce(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(undefined))
    // exclusive: a port another process merely shares through SO_REUSEPORT is not free for us
    server.listen({ host: HOST, port, exclusive: true }, () => {
      const address = server.address()
      const bound = typeof address === 'object' && address ? address.port : undefined
      server.close(() => resolve(bound))
    })
  })
}

/** Whether `port` can be bound on 127.0.0.1 right now. */
export async function isLoopbackPortFree(port: number): Promise<boolean> {
  return (await listenOnce(port)) === port
}

/** Whether `port` becomes free within `ms` (polled every 100 ms). */
export async function waitForLoopbackPort(port: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await isLoopbackPortFree(port)) return true
    if (Date.now() >= deadline) return false
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A port the kernel considers free now. Another process may still take it before the child binds. */
export async function pickFreeLoopbackPort(): Promise<number> {
  const port = await listenOnce(0)
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1')
  return port
}
