// The byte stream AMQP runs on over a WebSocket (src/amqp/websocket-stream.ts): order across pauses
// (also when the reader pauses and resumes from inside its own data handler, as rhea does), the
// bound on what a held peer may still send, and no holes in the output.
import { describe, expect, it } from 'vitest'
import { HeldInputBudget, WebSocketByteStream, type AmqpWebSocket } from '../src/amqp/websocket-stream.js'

/** A stand-in for the uWS WebSocket: records sends, reports a chosen buffered amount and send result. */
function fakeSocket(result = 1) {
  const sent: Buffer[] = []
  const state = { buffered: 0, closed: false, result }
  const ws: AmqpWebSocket = {
    send: ((data: Buffer) => { sent.push(Buffer.from(data)); return state.result }) as AmqpWebSocket['send'],
    getBufferedAmount: () => state.buffered,
    end: (() => { state.closed = true }) as AmqpWebSocket['end'],
    close: (() => { state.closed = true }) as AmqpWebSocket['close'],
  }
  return { ws, sent, state }
}

const turn = () => new Promise((r) => setImmediate(r))

describe('WebSocketByteStream', () => {
  it('keeps byte order across pauses, even when the reader pauses and resumes inside its data handler', async () => {
    const { ws } = fakeSocket()
    const stream = new WebSocketByteStream(ws, 'peer', 1 << 20)
    const got: string[] = []
    stream.on('data', (b: Buffer) => {
      got.push(b.toString())
      // rhea stops and restarts reading while it handles one chunk's frames
      if (b.toString() === 'b') { stream.pause(); stream.resume(); got.push('end of b') }
    })
    stream.received(Buffer.from('a'))
    stream.pause()
    stream.received(Buffer.from('b'))
    stream.received(Buffer.from('c'))
    stream.resume()
    stream.received(Buffer.from('d')) // arrives before the held ones were given: it waits behind them
    await turn()
    await turn()
    expect(got).toEqual(['a', 'b', 'end of b', 'c', 'd'])
  })

  it('closes a peer that sends more than its slack while held', () => {
    const { ws, state } = fakeSocket()
    const stream = new WebSocketByteStream(ws, 'peer', 100)
    const errors: string[] = []
    stream.on('error', (e: Error) => errors.push(e.message))
    stream.pause()
    stream.received(Buffer.alloc(60))
    expect(state.closed).toBe(false)
    stream.received(Buffer.alloc(60))
    expect(errors).toEqual(['more than 100 bytes sent while the hub was holding the connection'])
    expect(state.closed).toBe(true)
  })

  it('a send uWS dropped ends the connection rather than leave a hole in the byte stream', () => {
    const { ws, state } = fakeSocket(2)
    const stream = new WebSocketByteStream(ws, 'peer', 100)
    expect(stream.write(Buffer.from('frame'), () => {})).toBe(false)
    expect(state.closed).toBe(true)
    expect(stream.write(Buffer.from('next'), () => {})).toBe(false)
  })

  it('reports a write flushed only when uWS has sent it', async () => {
    const { ws, state } = fakeSocket()
    const stream = new WebSocketByteStream(ws, 'peer', 100)
    const flushed: string[] = []
    state.buffered = 10
    stream.write(Buffer.from('x'), () => flushed.push('x'))
    await turn()
    expect(flushed).toEqual([])
    expect(stream.writableLength).toBe(10)
    state.buffered = 0
    stream.drained()
    expect(flushed).toEqual(['x'])
  })
})

describe('the hub-wide bound on held WebSocket input', () => {
  it('closes the connection whose held bytes would pass what all held connections together may keep', () => {
    const budget = new HeldInputBudget(150)
    const a = fakeSocket(), b = fakeSocket()
    const sa = new WebSocketByteStream(a.ws, 'a', 100, budget)
    const sb = new WebSocketByteStream(b.ws, 'b', 100, budget)
    const errors: string[] = []
    sb.on('error', (e: Error) => errors.push(e.message))
    sa.pause(); sb.pause()
    sa.received(Buffer.alloc(90))
    sb.received(Buffer.alloc(50))
    expect(budget.held).toBe(140)
    sb.received(Buffer.alloc(20)) // within b's own slack, not within the hub's
    expect(errors).toEqual(['more than the 150 bytes all held WebSockets may keep sent while the hub was holding the connection'])
    expect({ a: a.state.closed, b: b.state.closed, held: budget.held }).toEqual({ a: false, b: true, held: 90 })
    sa.closed()
    expect(budget.held).toBe(0)
  })
})
