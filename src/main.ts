// `npm start` (and `npx hyperhub start`): runs the hub on its embedded defaults and prints how to
// connect to it.
import { pathToFileURL } from 'node:url'
import { ConfigError, loadConfig, usage } from './config.js'
import { startHub, StartupError } from './hub.js'
import { createLogger } from './log.js'
import { hasRight, serviceConnectionString } from './auth/policies.js'

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage())
    return
  }
  const config = loadConfig(argv)
  const log = createLogger(config.logLevel)
  const hub = await startHub(config, log)
  const owner = hub.policies.find((p) => p.keyName === 'iothubowner')!
  // "service" unless it was deleted or lost ServiceConnect: then any policy that reads the endpoint
  const readers = hub.policies.filter((p) => hasRight(p, 'ServiceConnect'))
  const reader = readers.find((p) => p.keyName === 'service') ?? readers.find((p) => p.keyName !== 'iothubowner') ?? owner
  // the banner names the embedded blob store's connection string, known once it has started
  if (hub.blobStore.embedded && config.blobStoreStart === 'boot') await hub.blobStore.open().catch(() => { /* logged by the hub */ })
  const blob = !hub.blobStore.configured ? ['Blob store: off (file upload answers 400 DefaultStorageEndpointNotConfigured)']
    : hub.blobStore.embedded
      ? ['Blob store (Azurite, for file uploads and storage endpoints; read it with @azure/storage-blob):', `  ${hub.blobStore.connectionString ?? '(starts on first use)'}`]
      : ['Blob store: the storage account of the configured connection string']
  // the banner is for the person who started the hub (stdout), not the log stream
  console.log([
    '',
    'Hyperhub is running.',
    `  host name            ${config.hostName}`,
    `  MQTT over TLS        port ${hub.ports.mqtt}`,
    `  HTTPS + MQTT/WSS     port ${hub.ports.https}${hub.ports.mqttTcp !== null ? `\n  MQTT over TCP        port ${hub.ports.mqttTcp} (unencrypted, for local use)` : ''}`,
    ...(hub.ports.amqp !== null ? [`  AMQP over TLS        port ${hub.ports.amqp}`] : []),
    `  data                 ${config.dataDir}`,
    '',
    'Service connection string (iothubowner):',
    `  ${serviceConnectionString(config.hostName, owner)}`,
    ...(hub.ports.https !== 443 ? ['  (the service SDKs always dial port 443; on another port only REST clients that take a port can reach it)'] : []),
    ...(hub.ports.amqp !== null && reader ? [
      `Event Hubs-compatible endpoint (built-in endpoint, policy "${reader.keyName}"):`,
      `  Endpoint=sb://${config.hostName}${hub.ports.amqp === 5671 ? '' : `:${hub.ports.amqp}`}/;SharedAccessKeyName=${reader.keyName};SharedAccessKey=${reader.primaryKey};EntityPath=${hub.eventHubName}`,
    ] : []),
    `Device connection strings: HostName=${hub.ports.mqtt === 8883 ? config.hostName : `${config.hostName}:${hub.ports.mqtt}`};DeviceId=<id>;SharedAccessKey=<the device's key>`,
    ...blob,
    '',
    'Trust the hub\'s local CA in every client process:',
    `  export NODE_EXTRA_CA_CERTS=${hub.caCertFile}`,
    // tools that resolve the host name and use the system's trust store (Azure IoT Explorer)
    ...(config.hostName !== 'localhost' ? [
      `Tools that dial ${config.hostName} need it to point here and the CA trusted by the system:`,
      `  hosts file (/etc/hosts, or C:\\Windows\\System32\\drivers\\etc\\hosts):  127.0.0.1 ${config.hostName}`,
      `  CA to trust: ${hub.caCertFile}`,
    ] : []),
    '',
  ].join('\n'))
  let signals = 0
  const shutdown = (signal: string) => {
    if (++signals > 1) process.exit(130)
    log.info('shutting down', { signal })
    void hub.stop().then(() => process.exit(process.exitCode ?? 0))
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
}

/** Starts the hub with these arguments; a bad setting or a port in use ends the process with one line and exit code 2. */
export function runHub(argv: string[]): Promise<void> {
  return main(argv).catch((e: unknown) => {
    if (e instanceof ConfigError || e instanceof StartupError) {
      console.error(`hyperhub: ${e.message}`)
      process.exit(2)
    }
    console.error('hyperhub: failed to start:', e)
    process.exit(1)
  })
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void runHub(process.argv.slice(2))
