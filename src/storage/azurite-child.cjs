// Runs in the blob store's child process, before Azurite's own blob entry point (argv is passed
// through to it). Its one job: the child never outlives the hub. The hub spawns us with an IPC
// channel; the kernel closes it however the hub ends (even SIGKILL), and then we shut down the
// way SIGTERM does, so Azurite saves its metadata (LokiJS autosaves only every 5 s).
'use strict'

const FORCE_EXIT_MS = 10_000
let stopping = false

function stop() {
  if (stopping) return
  stopping = true
  // before Azurite has put up its own SIGTERM handler it has served nothing: nothing to save
  if (process.listenerCount('SIGTERM') <= 1) process.exit(0)
  // Azurite closes its server and stores, but an open IPC channel would keep this process alive
  if (process.connected) process.disconnect()
  // a stuck keep-alive socket or store must not keep us running forever
  setTimeout(() => process.exit(0), FORCE_EXIT_MS).unref()
}

// Registered first and kept: a repeated SIGTERM must not fall back to the default (kill at once,
// before the metadata is saved); Azurite's own handlers are `once`.
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.on('disconnect', () => {
  if (stopping) return
  // the hub is gone: run Azurite's SIGTERM shutdown as if the signal had come
  process.emit('SIGTERM', 'SIGTERM')
})

if (!process.connected) {
  console.error('azurite-child: no IPC channel to the hub; refusing to start a process that could outlive it')
  process.exit(2)
}

require('azurite/dist/src/blob/main.js')
