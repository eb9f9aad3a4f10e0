// js-libp2p 3.x interop peer for NeoNet's harness (see tests/interop/README.md).
//
// Node 20 needs --experimental-websocket (global WebSocket, used by the /ws
// dialer) and the Promise.withResolvers polyfill:
//   node --experimental-websocket --import ./polyfill.mjs peer.mjs listen --transport tcp|ws [--ip IP] [--seed-hex HEX]
//   node --experimental-websocket --import ./polyfill.mjs peer.mjs dial --addr MA [--echo-bytes N] [--pings N]
//        [--perf-upload N --perf-download M] [--streams N]

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'

const ECHO = '/echo/1.0.0'
const PERF = '/perf/1.0.0'
const PING = '/ipfs/ping/1.0.0'
const AGENT = 'neonet-interop/js-libp2p/3.3.11'
const STEP_TIMEOUT = 60_000
const CHUNK = 64 * 1024
const STREAM_LIMITS = { maxInboundStreams: 1024, maxOutboundStreams: 1024 }

function parseArgs (argv) {
  const [mode, ...rest] = argv
  if (mode !== 'listen' && mode !== 'dial') {
    throw new Error('usage: peer.mjs listen|dial [options]')
  }
  const opts = {}
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith('--') || i + 1 >= rest.length) {
      throw new Error(`bad argument ${rest[i]}`)
    }
    opts[rest[i].slice(2)] = rest[i + 1]
  }
  return { mode, opts }
}

function intOpt (opts, name) {
  if (opts[name] === undefined) return undefined
  const n = Number(opts[name])
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name}: not a count: ${opts[name]}`)
  return n
}

async function privateKey (seedHex) {
  if (seedHex === undefined) return generateKeyPair('Ed25519')
  if (!/^[0-9a-fA-F]{64}$/.test(seedHex)) throw new Error('--seed-hex must be 64 hex digits')
  return generateKeyPairFromSeed('Ed25519', Buffer.from(seedHex, 'hex'))
}

async function makeNode (key, listen) {
  return createLibp2p({
    privateKey: key,
    nodeInfo: { userAgent: AGENT },
    addresses: { listen },
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping()
    },
    connectionManager: {
      // 3.x refuses more than 5 inbound connections/s from one host by default;
      // the dialer then sees a misleading "EncryptionFailedError: ECONNRESET".
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 1_000,
      maxConnections: 10_000
    }
  })
}

// ------------------------------------------------------------------ stream helpers

const asBytes = (chunk) => (chunk instanceof Uint8Array ? chunk : chunk.subarray())

/**
 * The chunks of a 3.x message stream until the remote closes its write side.
 *
 * Not `for await (const chunk of stream)`: in libp2p 3.3.11 that iterator only
 * ends on 'remoteCloseWrite'/'close', so when the remote's FIN arrived before
 * the handler started iterating (go-libp2p sends its protocol proposal, the
 * data and the FIN together once identify has cached our protocols) the loop
 * gets the data but never ends. Worse, `readableEnded` can already be true
 * while unread bytes (left over from protocol negotiation) are still buffered.
 * So: the stream has ended once the remote closed its write side (or our
 * read side closed) and nothing is left in the read buffer.
 */
async function * chunks (stream) {
  const queue = []
  let failure
  let wake = () => {}
  const onEnd = () => { wake() }
  const onClose = (evt) => { failure = evt.error; wake() }
  const onMessage = (evt) => { queue.push(asBytes(evt.data)); wake() }
  stream.addEventListener('end', onEnd)
  stream.addEventListener('close', onClose)
  stream.addEventListener('message', onMessage) // also flushes data buffered so far
  try {
    while (true) {
      if (queue.length > 0) {
        yield queue.shift()
      } else if (failure !== undefined) {
        throw failure
      } else if (stream.status === 'aborted' || stream.status === 'reset') {
        throw new Error(`stream ${stream.status}`)
      } else if (stream.status === 'closed') {
        return
      } else if (stream.readBufferLength === 0 &&
                 (stream.remoteWriteStatus === 'closed' || stream.readStatus === 'closed')) {
        return
      } else {
        await new Promise((resolve) => { wake = resolve })
        wake = () => {}
      }
    }
  } finally {
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('end', onEnd)
    stream.removeEventListener('close', onClose)
  }
}

/** Buffered reader on top of chunks(). */
class Reader {
  constructor (stream) {
    this.it = chunks(stream)
    this.buf = new Uint8Array(0)
  }

  /** Next chunk (up to any size), or null at end of stream. */
  async some () {
    if (this.buf.length > 0) {
      const out = this.buf
      this.buf = new Uint8Array(0)
      return out
    }
    const { value, done } = await this.it.next()
    return done ? null : value
  }

  async exactly (n) {
    const parts = []
    let have = 0
    while (have < n) {
      const chunk = await this.some()
      if (chunk === null) throw new Error(`stream ended after ${have} of ${n} bytes`)
      const take = Math.min(n - have, chunk.length)
      parts.push(chunk.subarray(0, take))
      if (take < chunk.length) this.buf = chunk.subarray(take)
      have += take
    }
    return Buffer.concat(parts)
  }
}

async function send (stream, data) {
  if (!stream.send(data)) await stream.onDrain()
}

async function sendZeros (stream, n) {
  const zeros = new Uint8Array(CHUNK)
  while (n > 0) {
    const k = Math.min(n, CHUNK)
    await send(stream, k === CHUNK ? zeros : zeros.subarray(0, k))
    n -= k
  }
}

// ------------------------------------------------------------------ servers

async function serveEcho (stream) {
  try {
    for await (const chunk of chunks(stream)) {
      await send(stream, chunk)
    }
    await stream.close()
  } catch (err) {
    console.error('echo:', err)
    stream.abort(err)
  }
}

async function servePerf (stream) {
  try {
    const reader = new Reader(stream)
    const hdr = await reader.exactly(8)
    const want = Number(hdr.readBigUInt64BE(0))
    while ((await reader.some()) !== null) { /* discard upload */ }
    await sendZeros(stream, want)
    await stream.close()
  } catch (err) {
    console.error('perf:', err)
    stream.abort(err)
  }
}

// ------------------------------------------------------------------ listen

async function listen (opts) {
  const transport = opts.transport ?? 'tcp'
  const ip = opts.ip ?? '127.0.0.1'
  const family = isIP(ip)
  if (family === 0) throw new Error(`--ip: bad address ${ip}`)
  let addr = `/ip${family}/${ip}/tcp/0`
  if (transport === 'ws') addr += '/ws'
  else if (transport !== 'tcp') throw new Error(`unsupported transport ${transport}`)

  const node = await makeNode(await privateKey(opts['seed-hex']), [addr])
  await node.handle(ECHO, (stream) => { void serveEcho(stream) }, STREAM_LIMITS)
  await node.handle(PERF, (stream) => { void servePerf(stream) }, STREAM_LIMITS)
  await node.start()
  const addrs = node.getMultiaddrs().map((a) => a.toString())
  if (addrs.length === 0) throw new Error('no listen address')
  // Catch SIGTERM/SIGINT before announcing the address, so a signal sent as
  // soon as the line is read still means a clean exit (status 0).
  const stop = new Promise((resolve) => {
    process.on('SIGTERM', resolve)
    process.on('SIGINT', resolve)
    process.stdin.on('end', resolve)
    process.stdin.on('error', resolve)
  })
  process.stdout.write(JSON.stringify({ peer_id: node.peerId.toString(), addrs }) + '\n')
  process.stdin.resume()
  await stop
  await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 2000))])
}

// ------------------------------------------------------------------ dial

function pseudoRandom (n, seed) {
  const out = Buffer.alloc(Math.ceil(n / 8) * 8)
  const mask = (1n << 64n) - 1n
  let state = BigInt.asUintN(64, seed)
  for (let off = 0; off < out.length; off += 8) {
    state ^= state >> 12n
    state ^= (state << 25n) & mask
    state ^= state >> 27n
    out.writeBigUInt64LE((state * 0x2545F4914F6CDD1Dn) & mask, off)
  }
  return out.subarray(0, n)
}

async function withTimeout (what, ms, fn) {
  const signal = AbortSignal.timeout(ms)
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out`)), ms)
  })
  try {
    return await Promise.race([fn(signal), timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function echoRound (conn, data, signal) {
  const stream = await conn.newStream(ECHO, { signal, ...STREAM_LIMITS })
  const writer = (async () => {
    for (let off = 0; off < data.length; off += CHUNK) {
      await send(stream, data.subarray(off, off + CHUNK))
    }
    await stream.close()
  })()
  const parts = []
  let got = 0
  for await (const chunk of chunks(stream)) {
    parts.push(chunk)
    got += chunk.length
  }
  await writer
  const back = Buffer.concat(parts, got)
  if (!back.equals(data)) {
    throw new Error(`echo mismatch: sent ${data.length} bytes, got ${got} back`)
  }
}

async function pingRounds (conn, count, signal) {
  const stream = await conn.newStream(PING, { signal })
  const reader = new Reader(stream)
  const rtts = []
  for (let i = 0; i < count; i++) {
    const payload = randomBytes(32)
    const t0 = performance.now()
    await send(stream, payload)
    const pong = await reader.exactly(32)
    rtts.push(performance.now() - t0)
    if (!pong.equals(payload)) throw new Error('ping payload mismatch')
  }
  await stream.close()
  return rtts
}

async function perfClient (conn, up, down, signal) {
  const stream = await conn.newStream(PERF, { signal, ...STREAM_LIMITS })
  const t0 = performance.now()
  const hdr = Buffer.alloc(8)
  hdr.writeBigUInt64BE(BigInt(down))
  await send(stream, hdr)
  await sendZeros(stream, up)
  await stream.close()
  const upSecs = (performance.now() - t0) / 1000
  const t1 = performance.now()
  let got = 0
  for await (const chunk of chunks(stream)) got += chunk.length
  const downSecs = (performance.now() - t1) / 1000
  if (got !== down) throw new Error(`perf: asked for ${down} bytes, got ${got}`)
  const mbps = (n, secs) => (n * 8) / Math.max(secs, 1e-9) / 1e6
  return {
    upload_bytes: up,
    download_bytes: got,
    upload_mbps: mbps(up, upSecs),
    download_mbps: mbps(got, downSecs)
  }
}

async function dial (opts) {
  if (opts.addr === undefined) throw new Error('dial needs --addr')
  const target = multiaddr(opts.addr)
  const remote = target.getComponents().findLast((c) => c.name === 'p2p')?.value
  if (remote === undefined) throw new Error('--addr must end with /p2p/<peer id>')
  const pings = intOpt(opts, 'pings') ?? 3
  const echoBytes = intOpt(opts, 'echo-bytes')
  const perfUp = intOpt(opts, 'perf-upload')
  const perfDown = intOpt(opts, 'perf-download')
  const streams = intOpt(opts, 'streams')

  const node = await makeNode(await privateKey(opts['seed-hex']), [])
  await node.start()
  const report = {}
  try {
    // Identify runs by itself on every new connection; catch its result.
    const identified = new Promise((resolve) => {
      node.addEventListener('peer:identify', (evt) => {
        if (evt.detail.peerId.toString() === remote) resolve(evt.detail)
      })
    })
    const t0 = performance.now()
    const conn = await withTimeout('connect', STEP_TIMEOUT, (signal) => node.dial(target, { signal }))
    report.connect_ms = performance.now() - t0
    report.remote_peer_id = conn.remotePeer.toString()
    if (report.remote_peer_id !== remote) throw new Error(`connected to ${report.remote_peer_id}, expected ${remote}`)

    const info = await withTimeout('identify', STEP_TIMEOUT, () => identified)
    report.identify = {
      protocols: info.protocols,
      agent_version: info.agentVersion ?? '',
      protocol_version: info.protocolVersion ?? '',
      listen_addrs: info.listenAddrs.map((a) => a.toString()),
      observed_addr: info.observedAddr?.toString() ?? ''
    }

    // The stock ping client reports whole milliseconds (Date.now()), so it runs
    // once as a check and the measured pings are timed here on one stream.
    await withTimeout('ping', STEP_TIMEOUT, (signal) => node.services.ping.ping(conn.remotePeer, { signal }))
    report.ping_rtt_ms = pings > 0
      ? await withTimeout('ping', STEP_TIMEOUT, (signal) => pingRounds(conn, pings, signal))
      : []

    if (echoBytes !== undefined) {
      const data = pseudoRandom(echoBytes, 0x9E3779B97F4A7C15n ^ BigInt(echoBytes))
      await withTimeout('echo', STEP_TIMEOUT, (signal) => echoRound(conn, data, signal))
      report.echo_ok = true
      report.echo_bytes = echoBytes
    }
    if (perfUp !== undefined || perfDown !== undefined) {
      report.perf = await withTimeout('perf', 300_000,
        (signal) => perfClient(conn, perfUp ?? 0, perfDown ?? 0, signal))
    }
    if (streams !== undefined) {
      const s0 = performance.now()
      for (let i = 0; i < streams; i++) {
        await withTimeout(`stream ${i}`, STEP_TIMEOUT,
          (signal) => echoRound(conn, Buffer.from([i & 0xff]), signal))
      }
      report.streams_per_second = streams / Math.max((performance.now() - s0) / 1000, 1e-9)
    }
    report.ok = true
    return report
  } finally {
    await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 2000))])
  }
}

// ------------------------------------------------------------------ main

function describe (err) {
  if (err instanceof Error) {
    const parts = [`${err.name}: ${err.message}`]
    if (err.cause !== undefined) parts.push(`cause: ${describe(err.cause)}`)
    if (Array.isArray(err.errors)) parts.push(...err.errors.map(describe))
    return parts.join('; ')
  }
  if (err instanceof Event) {
    // e.g. onDrain() rejects with the stream's 'close' event when the stream or
    // its connection goes away mid-write
    const inner = err.error ?? err.detail
    return `${err.constructor.name} '${err.type}'` +
      (inner === undefined ? ' (the stream or its connection closed)' : `: ${describe(inner)}`)
  }
  return String(err)
}

async function main () {
  let args
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (err) {
    console.error(err.message)
    process.exit(2)
  }
  if (args.mode === 'listen') {
    try {
      await listen(args.opts)
      process.exit(0)
    } catch (err) {
      console.error('listen failed:', err)
      process.exit(1)
    }
  }
  let report
  let code = 0
  try {
    report = await dial(args.opts)
  } catch (err) {
    console.error('dial failed:', err)
    report = { ok: false, error: describe(err) }
    code = 1
  }
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(code))
}

await main()
