// Puts the hub together: store, policies, registry, shards, MQTT listeners and the HTTPS app, and
// takes it apart again without losing an acknowledged message.
import { readFileSync } from 'node:fs'
import type net from 'node:net'
import { join } from 'node:path'
import uWS from './uws-native.js'
import type { us_listen_socket } from 'uWebSockets.js'
import { Authenticator } from './auth/authenticator.js'
import { createDefaultPolicies, type AccessPolicy } from './auth/policies.js'
import { PolicyRegistry } from './auth/policy-registry.js'
import { BearerTokenVerifier, jwksSource, type TrustedIssuer } from './auth/bearer-tokens.js'
import { ensureLocalIssuerKey, localIssuer } from './auth/local-issuer.js'
import { policyRoutes } from './rest/policy-routes.js'
import { certificateRoutes } from './rest/certificate-routes.js'
import { HttpsFront } from './tls/https-front.js'
import { BulkRegistry } from './registry/bulk-registry.js'
import { CertificateAuthorities, type StoredCertificate } from './auth/certificate-authorities.js'
import { portHint, type HubConfig } from './config.js'
import { BuiltInEndpoint } from './events/built-in-endpoint.js'
import { EventStream } from './events/event-stream.js'
import type { AmqpLimits } from './amqp/amqp-limits.js'
import { AmqpServer } from './amqp/amqp-server.js'
import { EventHubsEndpoint } from './amqp/event-hubs-endpoint.js'
import { ServiceLinks } from './amqp/service-links.js'
import type { Logger } from './log.js'
import { createTcpListener, createTlsListener, listen, TLS_HANDSHAKE_TIMEOUT_MS } from './mqtt/listeners.js'
import { mountWebSockets } from './edge/websocket-endpoints.js'
import { DeviceEdge } from './edge/device-edge.js'
import { IoThreads, ListenError } from './edge/io-threads.js'
import { DeviceRegistry } from './registry/device-registry.js'
import { AmqpDevices } from './amqp/amqp-devices.js'
import { ServiceBoundQueue, type FeedbackQueue, type FeedbackRecord } from './c2d/service-bound-queue.js'
import { c2dRoutes } from './rest/c2d-routes.js'
import { endpointLogRoutes, eventsRoutes } from './rest/events-routes.js'
import { queryRoutes } from './rest/query-routes.js'
import { routingRoutes } from './rest/routing-routes.js'
import { routeTestRoutes } from './rest/route-test-routes.js'
import { RoutingService } from './routing/routing-service.js'
import { QueryPool } from './query/query-pool.js'
import { ConfigurationStore } from './configurations/configuration-store.js'
import { ConfigurationApplier } from './configurations/configuration-applier.js'
import { configurationRoutes } from './rest/configuration-routes.js'
import { digitalTwinRoutes } from './rest/digital-twin-routes.js'
import { methodRoutes } from './rest/method-routes.js'
import { twinRoutes } from './rest/twin-routes.js'
import { mountRest, type Route } from './rest/http-server.js'
import { withTierLimits } from './rest/route-limits.js'
import { tierRoutes } from './rest/tier-routes.js'
import { faultRoutes } from './rest/fault-routes.js'
import { deviceHttpRoutes } from './rest/device-http-routes.js'
import { HttpDevices } from './edge/http-device.js'
import { deviceC2dRoutes } from './rest/device-c2d-routes.js'
import { fileUploadRoutes } from './rest/file-upload-routes.js'
import { FileUploads, type FileNotification } from './files/file-uploads.js'
import { BlobStore } from './storage/blob-store.js'
import { ModuleRegistry } from './registry/module-registry.js'
import { moduleRoutes } from './rest/module-routes.js'
import { moduleTwinRoutes } from './rest/module-twin-routes.js'
import type { RoutingConfig } from './routing/routing-config.js'
import { operatorRoutes } from './rest/operator-routes.js'
import { dashboardRoutes } from './rest/dashboard-routes.js'
import { HubMetrics } from './metrics/hub-metrics.js'
import { HubThrottles, type HubThrottlesOptions } from './throttle/hub-throttles.js'
import { parseTier } from './throttle/tiers.js'
import { JobStore } from './jobs/job-store.js'
import { JobRunner } from './jobs/job-runner.js'
import { jobRoutes } from './rest/job-routes.js'
import { ImportExportJobs } from './jobs/import-export-jobs.js'
import { importExportRoutes } from './rest/import-export-routes.js'
import { registryRoutes } from './rest/registry-routes.js'
import { ShardPool } from './shard-pool.js'
import { OP_STREAM_TAIL, shardOfPartition } from './shard-protocol.js'
import { moduleKey, OP_DEVICE_CHANGED } from './shard-protocol.js'
import { openHubStore } from './store/hub-store.js'
import { ensureLocalPki } from './tls/local-pki.js'
import { SessionResumption } from './tls/session-resumption.js'
import { LearnedIntermediates } from './auth/learned-intermediates.js'
import { WriteHealth } from './store/write-health.js'
import { containLmdbDiagnostics } from './store/lmdb-diagnostics.js'
import { prepareDataDir, protectStoreFiles } from './store/data-dir-permissions.js'
import { removeRunFile, writeRunFile } from './hub-run-file.js'
import { DataDirLockedError, lockDataDir } from './store/data-dir-lock.js'

export interface RunningHub {
  config: HubConfig
  /** the policies as they are now */
  readonly policies: AccessPolicy[]
  policyRegistry: PolicyRegistry
  caCertFile: string
  /** `httpsBackend`: the loopback port uWS serves behind the HTTPS port's TLS front */
  ports: { mqtt: number; https: number; httpsBackend: number; mqttTcp: number | null; amqp: number | null }
  /** the Event Hubs entity (EntityPath) of the built-in endpoint */
  eventHubName: string
  registry: DeviceRegistry
  edge: DeviceEdge
  /** every REST route the hub serves, with the permission it checks (the rights tests enumerate it) */
  routes: readonly Route[]
  /** the tier's throttles and the daily meter */
  throttles: HubThrottles
  /** file upload's and storage endpoints' blob store (connectionString once it runs) */
  blobStore: BlobStore
  stop(): Promise<void>
}

export class StartupError extends Error {}

/** What a hub is built with besides its settings. */
export interface StartHubOptions {
  /** overrides of the AMQP endpoint's bounds (tests shorten its deadlines) */
  amqpLimits?: Partial<AmqpLimits>
  /** the throttles' and quota's clock and how queued requests wait (tests move time themselves) */
  throttleClock?: HubThrottlesOptions
}

/** The issuers whose bearer tokens the hub trusts: its own key, and the configured JWKS. */
async function bearerVerifier(config: HubConfig): Promise<BearerTokenVerifier | undefined> {
  const issuers: TrustedIssuer[] = []
  if (config.localIssuer) issuers.push(localIssuer(await ensureLocalIssuerKey(config.dataDir)))
  if (config.jwks !== '') {
    try {
      issuers.push({ issuer: config.jwtIssuer, keys: jwksSource(config.jwks) })
    } catch (e) {
      throw new StartupError(`jwks: ${(e as Error).message}`)
    }
  }
  return issuers.length ? new BearerTokenVerifier(issuers, [config.jwtAudience]) : undefined
}

async function loadPolicies(store: ReturnType<typeof openHubStore>): Promise<AccessPolicy[]> {
  const existing = store.meta.get('policies') as AccessPolicy[] | undefined
  if (existing) return existing
  const created = createDefaultPolicies()
  await store.meta.put('policies', created)
  return created
}

export async function startHub(config: HubConfig, log: Logger, options: StartHubOptions = {}): Promise<RunningHub> {
  containLmdbDiagnostics(log)
  prepareDataDir(config.dataDir, log)
  let unlock: () => void
  try {
    unlock = lockDataDir(config.dataDir)
  } catch (e) {
    if (e instanceof DataDirLockedError) throw new StartupError(e.message)
    throw e
  }
  const store = openHubStore(config.dataDir, config.durability)
  protectStoreFiles(config.dataDir)
  // the main thread's writes (registry, checkpoints, consumer groups, feedback): refused with 503 ServerBusy while they cannot work
  const health = new WriteHealth({
    dataDir: config.dataDir, minFreeBytes: config.minFreeDiskMb * 1048576, name: 'main',
    report: (event, fields) => (event === 'failed' ? log.error('store writes failed; refusing writes until they work again', fields) : log.info('store writes work again', fields)),
  })
  const storedPartitions = store.meta.get('partitions') as number | undefined
  if (storedPartitions !== undefined && storedPartitions !== config.partitions) {
    await store.close()
    unlock()
    throw new StartupError(`partitions: this data directory was created with ${storedPartitions} partitions; the count cannot change (got ${config.partitions})`)
  }
  if (storedPartitions === undefined) await store.meta.put('partitions', config.partitions)
  const policies = new PolicyRegistry(await loadPolicies(store), (all) => store.meta.put('policies', all).then(() => {}))
  const tlsNames = [...new Set([config.hostName.replace(/:\d+$/, ''), 'localhost', '127.0.0.1', ...config.tlsNames])]
  const pki = ensureLocalPki(join(config.dataDir, 'tls'), tlsNames)
  if (pki.created) log.info('issued TLS certificates', { caCertFile: pki.caCertFile, names: tlsNames })
  // one set of ticket keys for every TLS listener and thread, kept beside the certificates across restarts
  const resumption = SessionResumption.open(join(config.dataDir, 'tls'), { warn: (message) => log.warn(message) })

  const endpoint = new BuiltInEndpoint(store, config.partitions, 'events', health)
  const stream = new EventStream(endpoint, (p, on) => shards.send(shardOfPartition(p, config.shards), [OP_STREAM_TAIL, p, on]))
  // the Event Hubs entity name of the built-in endpoint: the hub's name
  const eventHubName = config.hostName.split('.')[0]!.replace(/:\d+$/, '')
  const eventHubs = new EventHubsEndpoint(eventHubName, endpoint, log)
  let edge!: DeviceEdge
  const feedback = new ServiceBoundQueue<FeedbackRecord>(store.root, store.feedback, health)
  const fileNotifications = new ServiceBoundQueue<FileNotification>(store.root, store.fileNotifications, health, {
    batch: 1, lockMs: config.fileNotificationLockSeconds * 1000, ttlMs: config.fileNotificationTtlMinutes * 60_000, maxDeliveries: config.fileNotificationMaxDeliveries,
  })
  const blobStore: BlobStore = new BlobStore({
    setting: config.blobStore, dataDir: config.dataDir, port: config.blobPort, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile,
    caPem: readFileSync(pki.caCertFile, 'utf8'), log,
    // the shards' storage endpoints write to the store with the same account
    onOpened: (access): Promise<unknown> => (stopping ? Promise.resolve() : shards.broadcast('blob.endpoint', access)),
  })
  /** Storage endpoints need the store open: at start and whenever routing gains one (not awaited: their batches wait for it). */
  const openForStorage = (c: RoutingConfig) => {
    if (c.endpoints.storageContainers.length > 0) blobStore.keepOpen()
  }
  const fileUploads = new FileUploads(store.root, store.fileUploads, fileNotifications, () => blobStore.target(), {
    container: config.fileUploadContainer, sasTtlMs: config.fileUploadSasTtlMinutes * 60_000, notifications: config.fileUploadNotifications,
  }, health)
  // every shard applies a routing change before the REST call that made it is answered
  const hubPorts: number[] = []
  const routing: RoutingService = new RoutingService(store, config.partitions, (c): Promise<unknown> => { openForStorage(c); return shards.broadcast('routing.apply', c) },
    () => ({ allowPrivate: config.allowPrivateWebhooks, hubPorts }), health, blobStore.configured)
  // a shard reports its queues' depths as soon as it has loaded them, possibly before the edge exists
  const earlyCounts: [string, number][] = []
  const shards = new ShardPool(
    {
      shardCount: config.shards, partitions: config.partitions, retentionDays: config.retentionDays, dataDir: config.dataDir, durability: config.durability,
      hubName: eventHubName, routing: routing.current, minFreeDiskBytes: config.minFreeDiskMb * 1048576,
      allowPrivateWebhooks: config.allowPrivateWebhooks,
      blobStore: blobStore.configured,
    },
    {
      acks: (flat, from) => edge.acks(flat, from),
      telemetryDone: (flat, from) => edge.telemetryDone(flat, from),
      sessionOpened: (connId, present, filters, errorCode) => edge.sessionOpened(connId, present, filters, errorCode),
      subscriptionStored: (connId, packetId, errorCode) => edge.subscriptionStored(connId, packetId, errorCode),
      publish: (connId, topic, payload, qos, packetId, dup) => edge.publishFromShard(connId, topic, payload, qos, packetId, dup),
      c2dCount: (deviceId, count) => (edge ? edge.c2dCount(deviceId, count) : earlyCounts.push([deviceId, count])),
      feedback: (key, stored) => feedback.add(key as Parameters<FeedbackQueue['add']>[0], stored as Parameters<FeedbackQueue['add']>[1]),
      partitionAdvanced: (p, last, first, frame) => {
        stream.advanced(p, first, last, frame)
        eventHubs.advanced(p)
      },
      rejected: (connId, code, message, packetId) => edge.rejected(connId, code, message, packetId),
      log: (level, message, fields) => log[level](message, fields),
      fatal: (shard, error) => {
        log.error('shard failed; stopping the hub', { shard, error })
        process.exitCode = 70
        void stop()
      },
    },
  )
  await shards.start()

  const throttles = new HubThrottles(parseTier(config.tier), options.throttleClock)
  // the registry asks the edge who is connected; the edge asks the registry (through the authenticator) who may connect
  const registry = new DeviceRegistry(store.devices, {
    connectionState: (id) => edge.connectionState(id),
    lastActivityTime: (id) => edge.lastActivityTime(id),
    cloudToDeviceMessageCount: (id) => edge.cloudToDeviceMessageCount(id),
  }, health)
  const modules = new ModuleRegistry(store.root, store.modules, registry, health)
  // a module's twin and session live in its device's shard and go with the module; so does its connection
  modules.onCreated = (m) => shards.send(shards.shardFor(m.deviceId), [OP_DEVICE_CHANGED, moduleKey(m.deviceId, m.moduleId), m.generationId, true])
  modules.onRemoved = (deviceId, moduleIds) => Promise.all(moduleIds.map((m) => {
    edge.moduleRemoved(deviceId, m)
    return shards.requestForModule('module.remove', deviceId, m)
  }))
  edge = new DeviceEdge(new Authenticator(tlsNames, policies, registry, config.sasVerifier, config.maxTokenLifetimeDays * 86_400), shards, log, config.mqttFramer, {
    load: () => [...store.activity.getRange()].map(({ key, value }) => [key as string, value as number] as [string, number]),
    // written as a device disconnects: rare enough to need no batching
    record: (deviceId, at) => {
      if (!health.writable) return // last activity is a hint; it is not worth a failing write
      store.activity.put(deviceId, at).catch((e: unknown) => health.failed(e))
    },
    forget: (deviceId) => { store.activity.remove(deviceId).catch((e: unknown) => health.failed(e)) },
  })
  const authorities = new CertificateAuthorities((store.meta.get('caCertificates') as StoredCertificate[] | undefined) ?? [],
    (all) => store.meta.put('caCertificates', all).then(() => {}))
  authorities.intermediates = new LearnedIntermediates((store.meta.get('learnedIntermediates') as string[] | undefined) ?? [],
    (pems) => store.meta.put('learnedIntermediates', pems).then(() => {}),
    (e) => log.warn('learned intermediate certificates not stored', { error: e as Error }))
  edge.authenticator.authorities = authorities
  edge.authenticator.localAuth = !config.disableLocalAuth
  edge.authenticator.bearer = await bearerVerifier(config)
  for (const [deviceId, count] of earlyCounts.splice(0)) edge.c2dCount(deviceId, count)
  edge.throttles = throttles
  edge.authenticator.modules = modules
  modules.presence = edge
  registry.onChange((e) => edge.registryChanged(e))
  edge.onModelAnnounced = (deviceId, modelId) => {
    registry.setModelId(deviceId, modelId).catch((e: unknown) => log.warn('model id not stored', { deviceId, error: e as Error }))
  }
  // a device's twin and C2D queue live in its shard: created with the device, gone with it
  registry.onChange((e) => {
    // version 1 is a new identity (lifecycle event createDeviceIdentity)
    shards.send(shards.shardFor(e.device.deviceId), [OP_DEVICE_CHANGED, e.device.deviceId, e.kind === 'deleted' ? null : e.device.generationId,
      e.kind !== 'deleted' && e.device.version === 1])
    if (e.kind === 'deleted') feedback.dropDevice(e.device.deviceId).catch((err: unknown) => log.warn('feedback of a deleted device not dropped', { deviceId: e.device.deviceId, error: err as Error }))
  })

  const servers: net.Server[] = []
  const bind = async (server: net.Server, port: number, key: 'mqttPort' | 'mqttTcpPort', what: string) => {
    try {
      const bound = await listen(server, port, config.host)
      servers.push(server)
      return bound
    } catch (e) {
      throw new StartupError(`cannot listen on ${config.host}:${port} for ${what} (${(e as NodeJS.ErrnoException).code}); ${portHint(key)}`)
    }
  }

  const queries = new QueryPool(config.dataDir, config.durability, edge)
  const configurations = new ConfigurationStore(store.configurations, health,
    (id, reason) => log.warn('stored configuration breaks the rules and is not applied; PUT it again to replace it', { id, reason }))
  const configurationApplier = new ConfigurationApplier(configurations, queries, shards, modules, log, config.configurationIntervalSeconds * 1000)
  configurationApplier.start()
  const jobStore = new JobStore(store.root, store.jobs, store.jobDevices, store.jobPages, health)
  const jobRunner = new JobRunner({ store: jobStore, queries, registry, edge, shards, throttles, log })
  // import lines go through the bulk registry's per-item logic, modules included; blob requests follow the webhook address rules, the hub's own store excepted
  const importExportJobs = new ImportExportJobs({
    db: store.importExportJobs, root: store.root, twins: store.twins, registry, modules, configurations, log, health,
    bulk: new BulkRegistry(registry, (id, patch, ifMatch) => shards.request('twin.update', id, 'patch', patch, ifMatch),
      { registry: modules, patchTwin: (d, m, patch, ifMatch) => shards.requestForModule('twin.update', d, m, 'patch', patch, ifMatch) }),
    containers: { destination: () => ({ allowPrivate: config.allowPrivateWebhooks, hubPorts }), embeddedStore: () => blobStore.embeddedEndpoint },
  })
  const key = readFileSync(pki.serverKeyFile, 'utf8')
  const cert = readFileSync(pki.serverCertFile, 'utf8')
  // MQTT over TLS and TCP on worker threads (or, with --io-threads 0, on this one)
  const ioThreads = config.ioThreads > 0
    ? new IoThreads({
      count: config.ioThreads, edge, shards, throttles, partitions: config.partitions, framer: config.mqttFramer, key, cert, resumption, log,
      fatal: (error) => {
        log.error('an I/O thread failed; stopping the hub', { error })
        process.exitCode = 70
        void stop()
      },
    })
    : undefined
  // TLS for the HTTPS port is node:tls in front of uWS on loopback (https-front.ts: client certificates)
  let backendPort = 0
  const front = new HttpsFront({ key, cert, handshakeTimeoutMs: TLS_HANDSHAKE_TIMEOUT_MS, backendPort: () => backendPort, resumption })
  const app = uWS.App()
  // one AMQP engine for 5671 and for AMQP over WebSocket on the HTTPS port (which works with 5671 off)
  const amqpServer = new AmqpServer({
    host: config.host, port: config.amqpPort ?? 0, key, cert, resumption, hostNames: tlsNames, auth: edge.authenticator, eventHubs,
    service: new ServiceLinks(registry, shards, feedback, log, eventHubName, throttles, fileNotifications), devices: new AmqpDevices(edge, registry, log), log, limits: options.amqpLimits,
  })
  const webSocketHeldInput = mountWebSockets(app, edge, amqpServer, front)
  stream.mount(app, edge.authenticator, front)
  const routes: Route[] = [
    ...registryRoutes(registry, edge, new BulkRegistry(registry, (id, patch, ifMatch) => shards.request('twin.update', id, 'patch', patch, ifMatch))), ...moduleRoutes(modules), ...moduleTwinRoutes(modules, shards), ...eventsRoutes(endpoint), ...twinRoutes(registry, shards), ...methodRoutes(registry, edge, modules),
    ...c2dRoutes(registry, shards, feedback, eventHubName), ...routingRoutes(routing), ...routeTestRoutes(routing), ...endpointLogRoutes((name) => routing.logEndpoint(name)),
    ...queryRoutes(queries), ...configurationRoutes(configurations, configurationApplier, registry),
    ...digitalTwinRoutes(registry, modules, shards, edge), ...policyRoutes(policies), ...certificateRoutes(authorities),
    ...jobRoutes(jobStore, jobRunner, throttles), ...importExportRoutes(importExportJobs, edge.authenticator),
  ]
  // a changed or deleted policy ends the connections whose token it no longer signs
  authorities.onRevoke((name) => {
    edge.certificateRevoked(name).catch((e: unknown) => log.error('closing connections of a revoked CA failed', { name, error: e as Error }))
    try {
      amqpServer.certificateRevoked(name)
    } catch (e) {
      log.error('closing AMQP connections of a revoked CA failed', { name, error: e as Error })
    }
  })
  policies.onChange(() => {
    edge.policiesChanged()
    amqpServer.policiesChanged()
    stream.policiesChanged()
  })
  const httpDevices = new HttpDevices(edge, shards)
  routes.push(...tierRoutes(throttles), ...faultRoutes(throttles.faults, edge), ...deviceHttpRoutes(httpDevices), ...deviceC2dRoutes(shards, throttles, log), ...fileUploadRoutes(fileUploads, fileNotifications, eventHubName))
  const metrics = new HubMetrics({
    edge, throttles, webSocketHeldInputBytes: () => webSocketHeldInput.held,
    partitionDepths: () => Array.from({ length: config.partitions }, (_, p) => {
      const info = endpoint.partitionInfo(p)
      return Math.max(0, info.lastEnqueuedSequenceNumber - info.beginSequenceNumber + 1)
    }),
  })
  let started = false
  routes.push(...operatorRoutes(metrics, {
    notReady: () => (stopping ? ['the hub is stopping'] : started ? [] : ['listeners', 'shards']),
  }), ...dashboardRoutes())
  mountRest(app, routes.map((r) => withTierLimits(r, throttles)), edge.authenticator, log, front)

  let httpsSocket: us_listen_socket | undefined
  let stopping: Promise<void> | undefined
  async function stop(): Promise<void> {
    stopping ??= (async () => {
      removeRunFile(config.dataDir)
      for (const s of servers) s.close()
      const ioStopped = ioThreads?.stopListening().catch((e: unknown) => log.error('I/O threads did not stop listening', { error: e as Error }))
      front.server.close()
      if (httpsSocket) uWS.us_listen_socket_close(httpsSocket)
      await amqpServer.close()
      // a cycle under way stops at its next query page; its twin writes are answered before the shards stop
      await configurationApplier.close()
      await jobRunner.close() // jobs stop where they are and resume on the next start
      await importExportJobs.close() // a running import or export ends failed (it is not resumed)
      edge.pauseAll()
      await ioStopped
      // what the I/O threads read reaches the shards before they stop, and its acks come back to them
      await ioThreads?.pauseReading().catch((e: unknown) => log.error('I/O threads did not pause', { error: e as Error }))
      await shards.stop()
      await ioThreads?.close('hub shutting down').catch((e: unknown) => log.error('I/O threads did not close', { error: e as Error }))
      httpDevices.close() // every ack the shards release is written before this resolves
      fileUploads.close()
      feedback.close()
      fileNotifications.close()
      await blobStore.close()
      await queries.close()
      edge.closeAll('hub shutting down')
      stream.closeAll()
      front.close() // last: what the closes above wrote to WebSockets passes through it
      health.close()
      resumption.close()
      await store.close()
      unlock()
      log.info('hub stopped')
    })()
    return stopping
  }

  try {
    let mqtt: number
    let mqttTcp: number | null
    if (ioThreads) {
      try {
        ({ mqtt, mqttTcp } = await ioThreads.start({ host: config.host, mqttPort: config.mqttPort, mqttTcpPort: config.mqttTcpPort }))
      } catch (e) {
        if (!(e instanceof ListenError)) throw e
        const [port, what] = e.what === 'mqttPort' ? [config.mqttPort, 'MQTT over TLS'] : [config.mqttTcpPort, 'MQTT over TCP']
        throw new StartupError(`cannot listen on ${config.host}:${port} for ${what} (${e.code}); ${portHint(e.what)}`)
      }
    } else {
      mqtt = await bind(createTlsListener(edge, key, cert, resumption), config.mqttPort, 'mqttPort', 'MQTT over TLS')
      mqttTcp = config.mqttTcpPort === null ? null : await bind(createTcpListener(edge), config.mqttTcpPort, 'mqttTcpPort', 'MQTT over TCP')
    }
    backendPort = await new Promise<number>((resolve, reject) => {
      app.listen('127.0.0.1', 0, (ls) => {
        if (!ls) return reject(new StartupError('cannot listen on a loopback port for the HTTPS server behind the TLS front'))
        httpsSocket = ls
        resolve(uWS.us_socket_local_port(ls))
      })
    })
    const https = await front.listen(config.httpsPort, config.host).catch((e: NodeJS.ErrnoException) => {
      throw new StartupError(`cannot listen on ${config.host}:${config.httpsPort} for HTTPS and MQTT over WebSocket (${e.code ?? 'in use, or not permitted'}); ${portHint('httpsPort')}`)
    })
    let amqp: number | null = null
    if (config.amqpPort !== null) {
      try {
        amqp = await amqpServer.listen()
      } catch (e) {
        throw new StartupError(`cannot listen on ${config.host}:${config.amqpPort} for AMQP (${(e as NodeJS.ErrnoException).code}); ${portHint('amqpPort')}`)
      }
    }
    // webhooks to the hub's own ports would loop back into it: the shards learn the bound ports
    hubPorts.push(...[mqtt, https, backendPort, mqttTcp, amqp].filter((p): p is number => p !== null))
    await shards.broadcast('hub.ports', [...hubPorts])
    // the embedded blob store starts beside the hub, not before it: a slow start delays no listener
    if (blobStore.embedded && config.blobStoreStart === 'boot') blobStore.keepOpen()
    else openForStorage(routing.current)
    jobRunner.start()
    started = true
    writeRunFile(config.dataDir, { pid: process.pid, hostName: config.hostName, host: config.host, ports: { https, mqtt, mqttTcp, amqp }, caCertFile: pki.caCertFile, startedAt: new Date().toISOString() })
    log.info('hub started', { hostName: config.hostName, mqtt, https, mqttTcp, amqp, shards: config.shards, partitions: config.partitions, ioThreads: config.ioThreads })
    return { config, get policies() { return policies.list() }, policyRegistry: policies, caCertFile: pki.caCertFile, ports: { mqtt, https, httpsBackend: backendPort, mqttTcp, amqp }, eventHubName, registry, edge, routes, throttles, blobStore, stop }
  } catch (e) {
    await stop()
    throw e
  }
}
