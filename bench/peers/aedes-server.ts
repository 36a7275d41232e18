// aedes over node:net, with its default in-memory persistence: the peer as a user would run it.
// Usage: node --import tsx bench/peers/aedes-server.ts PORT
import net from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2] ?? 1883)
const broker = await Aedes.createBroker()
const server = net.createServer(broker.handle)
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => console.log(`aedes listening on ${port}`))
process.on('SIGTERM', () => { server.close(); broker.close(() => process.exit(0)) })
