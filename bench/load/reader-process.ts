// The back-end reader in its own process, so it competes for CPU like a real back end would.
import { startReader, type ReaderConfig } from './backend-reader.js'

let reader: Awaited<ReturnType<typeof startReader>> | undefined
process.on('message', (msg: { type: 'start'; config: ReaderConfig } | { type: 'count' } | { type: 'stop'; windowStartUs: number; windowEndUs: number }) => {
  if (msg.type === 'start') {
    startReader(msg.config).then((r) => { reader = r; process.send!({ type: 'ready' }) }, (e: Error) => process.send!({ type: 'error', message: e.message }))
  } else if (msg.type === 'count') {
    process.send!({ type: 'count', received: reader?.received() ?? 0 })
  } else if (msg.type === 'stop') {
    void reader!.stop(msg.windowStartUs, msg.windowEndUs).then((stats) => process.send!({ type: 'done', stats }, () => process.exit(0)))
  }
})
