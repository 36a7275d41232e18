// A generator child process: runs publishers or a storm for its share of the devices, so that
// several processes can drive the server when one would saturate a core.
import { runPublishers, type PublishConfig } from './publisher.js'
import { runStorm, type StormConfig } from './storm.js'

type Job = { kind: 'publish'; config: PublishConfig } | { kind: 'storm'; config: StormConfig }

process.on('message', (msg: { type: 'run'; job: Job } | { type: 'go' }) => {
  if (msg.type !== 'run') return
  const go = () => new Promise<void>((resolve) => {
    process.send!({ type: 'ready' })
    const onGo = (m: { type: string }) => { if (m.type === 'go') { process.off('message', onGo); resolve() } }
    process.on('message', onGo)
  })
  const work = msg.job.kind === 'publish' ? runPublishers(msg.job.config, go) : runStorm(msg.job.config, go)
  work.then(
    (stats) => process.send!({ type: 'done', stats }, () => process.exit(0)),
    (e: Error) => process.send!({ type: 'error', message: e.message }, () => process.exit(1)),
  )
})
