// Every bound the AMQP endpoint holds a connection to: how long a peer may take to prove who it is,
// what it may make the hub hold before and after that, and how much the hub holds for a peer that
// does not read. One table, so a test can shorten the deadlines and a reader sees every limit.

export interface AmqpLimits {
  /** TCP accept → end of the TLS handshake; a socket still handshaking then is destroyed */
  handshakeTimeoutMs: number
  /** end of the TLS handshake → the peer's AMQP open frame */
  openTimeoutMs: number
  /** end of the TLS handshake → the first valid token put on `$cbs` */
  cbsTimeoutMs: number
  /** the max-frame-size we advertise in open; a larger frame closes the connection before it is read */
  maxFrameBytes: number
  /** one message, whether it arrives in one transfer frame or is reassembled from several */
  maxMessageBytes: number
  /** everything a peer may send before its first valid token */
  maxUnauthenticatedBytes: number
  maxSessionsPerConnection: number
  maxLinksPerConnection: number
  /** connections from one source address that have not put a valid token yet (handshaking included) */
  maxUnauthenticatedPerAddress: number
  /** all connections from one source address */
  maxConnectionsPerAddress: number
  /** bytes the hub holds for one connection (socket buffer + messages rhea has not written); producers stop above it */
  maxOutgoingBufferedBytes: number
  /** how long a connection may stay above maxOutgoingBufferedBytes before it is dropped as not reading */
  outgoingStallTimeoutMs: number
  /** after the hub ends a connection, how long the peer has to finish before the socket is destroyed */
  closeGraceMs: number
}

export const DEFAULT_AMQP_LIMITS: Readonly<AmqpLimits> = {
  handshakeTimeoutMs: 10_000,
  openTimeoutMs: 10_000,
  // a connection that never authenticates is closed after a minute, as Azure does
  cbsTimeoutMs: 60_000,
  // Microsoft.Azure.Amqp's default frame size: clients written for Azure already split messages to it
  maxFrameBytes: 64 * 1024,
  // four times the largest IoT Hub message (a 256 KB D2C batch) leaves room for any encoding overhead;
  // C2D messages (64 KB at most) are refused with their own error well below it
  maxMessageBytes: 1024 * 1024,
  // the Event Hubs and IoT Hub clients send about 1 KB up to and with their first put-token
  maxUnauthenticatedBytes: 64 * 1024,
  // @azure/event-hubs opens a session per receiver: 32 partitions + $cbs + $management fit many times over
  maxSessionsPerConnection: 128,
  maxLinksPerConnection: 256,
  // loopback load tests connect many clients at once from one address: generous, but bounded
  maxUnauthenticatedPerAddress: 100,
  maxConnectionsPerAddress: 1000,
  // a consumer reading at full speed keeps its socket buffer far below this; the kernel buffers more
  maxOutgoingBufferedBytes: 1024 * 1024,
  outgoingStallTimeoutMs: 60_000,
  closeGraceMs: 2_000,
}

/** The defaults with `overrides` applied. */
export function amqpLimits(overrides: Partial<AmqpLimits> = {}): AmqpLimits {
  return { ...DEFAULT_AMQP_LIMITS, ...overrides }
}
