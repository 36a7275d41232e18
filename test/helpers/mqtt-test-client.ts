// A bare MQTT 3.1.1 client over TCP or TLS for protocol tests: it sends exactly what the test says,
// including bytes no real client would send.
import net from 'node:net'
import tls from 'node:tls'
import mqttPacket from 'mqtt-packet'

export interface ConnectOptions {
  port: number
  /** with `cert` and `key`: a client certificate (and the chain `cert` holds) */
  tls?: TlsClientOptions
  clientId: string
  username?: string
  password?: string
  clean?: boolean
  keepalive?: number
  will?: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean }
}

/** `session`: a TLS session (ticket) from an earlier connection, to resume */
export interface TlsClientOptions { ca: string; cert?: string; key?: string; session?: Buffer }

export class MqttTestClient {
  /** the last TLS session (ticket) the server gave this connection */
  session: Buffer | undefined
  readonly packets: mqttPacket.Packet[] = []
  private waiters: { match: (p: mqttPacket.Packet) => boolean; resolve: (p: mqttPacket.Packet) => void }[] = []
  private nextId = 1
  readonly closed: Promise<void>

  private constructor(readonly socket: net.Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p: mqttPacket.Packet) => {
      this.packets.push(p)
      const i = this.waiters.findIndex((w) => w.match(p))
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(p)
    })
    socket.on('data', (d: Buffer) => parser.parse(d))
    socket.on('error', () => {})
    socket.on('session', (s: Buffer) => { this.session = s })
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
  }

  static async open(port: number, ca?: string, client?: Omit<TlsClientOptions, 'ca'>): Promise<MqttTestClient> {
    const socket = ca
      ? tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...(client?.cert ? { cert: client.cert, key: client.key } : {}), ...(client?.session ? { session: client.session } : {}) })
      : net.connect({ host: '127.0.0.1', port })
    // listening from the start: a TLS 1.3 ticket can come with the first bytes after the handshake
    const c = new MqttTestClient(socket)
    await new Promise<void>((resolve, reject) => {
      socket.once(ca ? 'secureConnect' : 'connect', () => resolve())
      socket.once('error', reject)
    })
    return c
  }

  /** Opens a socket and sends CONNECT; resolves with the CONNACK (or rejects if the socket closes first). */
  static async connect(o: ConnectOptions): Promise<{ client: MqttTestClient; connack: mqttPacket.IConnackPacket }> {
    const client = await MqttTestClient.open(o.port, o.tls?.ca, o.tls)
    client.send({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: o.clientId, clean: o.clean ?? false,
      keepalive: o.keepalive ?? 60, username: o.username ?? `localhost/${o.clientId}/?api-version=2021-04-12`,
      password: o.password === undefined ? undefined : Buffer.from(o.password), will: o.will,
    } as mqttPacket.IConnectPacket)
    const connack = await client.next('connack') as mqttPacket.IConnackPacket
    return { client, connack }
  }

  send(packet: mqttPacket.Packet): void {
    this.socket.write(mqttPacket.generate(packet))
  }

  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** Next packet of that kind, or rejects when the connection closes first. */
  next(cmd: string, match: (p: any) => boolean = () => true): Promise<mqttPacket.Packet> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ match: (p) => p.cmd === cmd && match(p), resolve })
      void this.closed.then(() => reject(new Error(`connection closed while waiting for ${cmd}`)))
    })
  }

  async publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 1, retain = false): Promise<number> {
    const messageId = qos ? this.nextId++ : undefined
    const acked = qos ? this.next('puback', (p) => p.messageId === messageId) : undefined
    this.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain, dup: false, messageId } as mqttPacket.IPublishPacket)
    if (acked) await acked
    return messageId ?? 0
  }

  async subscribe(topic: string, qos: 0 | 1 = 1): Promise<number[]> {
    const messageId = this.nextId++
    const ack = this.next('suback', (p) => p.messageId === messageId)
    this.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] } as mqttPacket.ISubscribePacket)
    return ((await ack) as mqttPacket.ISubackPacket).granted as number[]
  }

  disconnect(): Promise<void> {
    this.send({ cmd: 'disconnect' })
    this.socket.end()
    return this.closed
  }

  destroy(): void {
    this.socket.destroy()
  }
}
