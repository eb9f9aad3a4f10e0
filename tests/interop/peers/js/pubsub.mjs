// js-libp2p 3.x GossipSub peer (@libp2p/gossipsub 17.x, spec defaults) for NeoNet's
// pubsub interop tests. The JSON-lines contract of tests/interop/README.md ("Pubsub
// peers"):
//   node --import ./polyfill.mjs pubsub.mjs [--ip IP] [--seed-hex HEX]
// prints {"event":"listening",...}, then reads one JSON command per stdin line
// (connect, subscribe, publish, peers); received messages print as {"event":"message"}.

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { isIP } from 'node:net'
import { createInterface } from 'node:readline'

const AGENT = 'neonet-interop/js-libp2p/3.3.11'

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function parseArgs (argv) {
  const opts = { ip: '127.0.0.1' }
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`)
    opts[argv[i].slice(2)] = argv[i + 1]
  }
  return opts
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const family = isIP(opts.ip) === 6 ? 'ip6' : 'ip4'
  const privateKey = opts['seed-hex'] === undefined
    ? await generateKeyPair('Ed25519')
    : await generateKeyPairFromSeed('Ed25519', Buffer.from(opts['seed-hex'], 'hex'))
  const node = await createLibp2p({
    privateKey,
    nodeInfo: { userAgent: AGENT },
    addresses: { listen: [`/${family}/${opts.ip}/tcp/0`] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      // Defaults: D=6, heartbeat 1 s, StrictSign, from+seqno message IDs.
      pubsub: gossipsub()
    },
    connectionManager: {
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 1_000,
      maxConnections: 10_000
    }
  })
  const pubsub = node.services.pubsub
  pubsub.addEventListener('message', (evt) => {
    const msg = evt.detail
    emit({
      event: 'message',
      topic: msg.topic,
      data: Buffer.from(msg.data).toString('hex'),
      from: msg.type === 'signed' ? msg.from.toString() : null
    })
  })
  emit({
    event: 'listening',
    peer_id: node.peerId.toString(),
    addrs: node.getMultiaddrs().map((a) => a.toString())
  })

  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line.trim() === '') continue
    let cmd
    try {
      cmd = JSON.parse(line)
      await handle(node, pubsub, cmd)
    } catch (err) {
      emit({ event: 'error', cmd: cmd?.cmd ?? line.slice(0, 200), error: String(err?.stack ?? err) })
    }
  }
  await node.stop()
  process.exit(0)
}

async function handle (node, pubsub, cmd) {
  switch (cmd.cmd) {
    case 'connect': {
      const ma = multiaddr(cmd.addr)
      await node.dial(ma, { signal: AbortSignal.timeout(20_000) })
      emit({ event: 'connected', peer_id: ma.getComponents().find((c) => c.name === 'p2p')?.value ?? null })
      break
    }
    case 'subscribe':
      pubsub.subscribe(cmd.topic)
      emit({ event: 'subscribed', topic: cmd.topic })
      break
    case 'publish':
      await pubsub.publish(cmd.topic, Buffer.from(cmd.data, 'hex'))
      emit({ event: 'published', topic: cmd.topic })
      break
    case 'peers':
      emit({ event: 'peers', topic: cmd.topic, peers: pubsub.getSubscribers(cmd.topic).map((p) => p.toString()).sort() })
      break
    default:
      throw new Error(`unknown command ${cmd.cmd}`)
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n')
  process.exit(1)
})
