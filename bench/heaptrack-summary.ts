// Native memory per connection by where it was allocated: the difference between two heaptrack
// runs of bench/tls-idle-memory.ts (--leak-at-exit: the server exits with its connections open, so
// what heaptrack calls leaked is what they held), grouped by the Node frame that allocated it and
// the first two OpenSSL frames below. Heaptrack is Debian's `heaptrack` package.
//   heaptrack -o /tmp/ht.tls node --expose-gc --import tsx bench/tls-idle-memory.ts --role server --variant tls --n 1000 --leak-at-exit
//   heaptrack_print -f /tmp/ht.tls.zst --print-leaks 0 --print-peaks 0 --print-allocators 0 --print-temporary 0 \
//     --print-flamegraph /tmp/flame.tls --flamegraph-cost-type leaked   (the same for --variant tcp)
//   npx tsx bench/heaptrack-summary.ts /tmp/flame.tls /tmp/flame.tcp 1050
// (1050: the connections held, plus the 50 warm-up ones' share of one-time state: near enough)
import { readFileSync } from 'node:fs'

/** allocator and state-machine frames that say nothing about what the memory is for */
const PLUMBING = /^(CRYPTO_|OPENSSL_sk|ossl_statem|state_machine|read_state_machine|write_state_machine|SSL_do_handshake|SSL_read|ssl3_read|ssl_read|ssl_do_handshake|SSL_accept|malloc|operator new)/

function byPlace(file: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const k = line.lastIndexOf(' ')
    const cost = Number(line.slice(k + 1))
    if (!(cost > 0)) continue
    const frames = line.slice(0, k).split(';').filter(Boolean).map((f) => f.replace(/ \(.*\)$/, '').replace('non-virtual thunk to ', ''))
    let lastNode = -1
    frames.forEach((f, i) => { if (f.startsWith('node::')) lastNode = i })
    let key: string
    if (lastNode < 0) key = `v8/other: ${frames.at(-2) ?? frames.at(-1)}`
    else {
      const below = frames.slice(lastNode + 1).filter((f) => !PLUMBING.test(f) && !f.startsWith('v8::') && !f.startsWith('Builtins'))
      key = below.length ? `${frames[lastNode]} > ${below.slice(0, 2).join(' > ')}` : `${frames[lastNode]} (own)`
    }
    out.set(key, (out.get(key) ?? 0) + cost)
  }
  return out
}

const [file, baseline, n = '1000', top = '25'] = process.argv.slice(2)
if (!file) throw new Error('usage: heaptrack-summary.ts <flamegraph> [<baseline flamegraph> | -] [connections] [rows]')
const a = byPlace(file)
const b = baseline && baseline !== '-' ? byPlace(baseline) : new Map<string, number>()
const diff = [...new Set([...a.keys(), ...b.keys()])].map((k) => ({ k, bytes: ((a.get(k) ?? 0) - (b.get(k) ?? 0)) / Number(n) }))
console.log(`allocated and still held, per connection: ${diff.reduce((s, d) => s + d.bytes, 0).toFixed(0)} B`)
for (const d of diff.sort((x, y) => y.bytes - x.bytes).slice(0, Number(top))) console.log(`${d.bytes.toFixed(0).padStart(8)} B  ${d.k.slice(0, 180)}`)
