/**
 * Slow and idle clients cannot hold the server (SECURITY.md row 28): a body trickled byte by byte is cut
 * at REQUEST_TIMEOUT (not at twice it, as Node's 30 s check interval allowed), and connections past
 * MAX_CONNECTIONS are closed on arrival; headers trickled are cut at the headers timeout; a header flood
 * is 431; an oversized body is a 413 the client can read even while it is still sending (row 6); a
 * 10,000-deep JSON body is a 400. Through a real listening socket.
 */
import http from 'node:http'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'

let t: TestApp
let port: number
beforeAll(async () => {
  t = await buildTestApp({ env: { REQUEST_TIMEOUT: '2s', MAX_CONNECTIONS: '4', ADMIN_API_TOKEN: ADMIN_TOKEN } })
  await t.app.listen({ port: 0, host: '127.0.0.1' })
  port = (t.app.server.address() as net.AddressInfo).port
})
afterAll(async () => t.close())

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket))
    socket.on('error', reject)
  })
}

/** Resolves when the server closes the socket, with what it sent and how long after `since`. */
function closed(socket: net.Socket, since: number): Promise<{ ms: number; data: string }> {
  let data = ''
  socket.on('data', (d) => (data += d))
  return new Promise((resolve) => socket.on('close', () => resolve({ ms: Date.now() - since, data })))
}

describe('a body trickled one byte at a time', () => {
  it('is cut at REQUEST_TIMEOUT (checked every second), while other requests are answered', async () => {
    const slow = await trickle('PUT /mdm/apple/mdm HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-apple-aspen-mdm\r\nContent-Length: 1000\r\n\r\n', () => '<', 400)
    try {
      const health = await fetch(`http://127.0.0.1:${port}/healthz`)
      expect(health.status).toBe(200)
      expectCutAtTimeout(await slow.end)
    } finally {
      slow.stop()
    }
  })
})

describe('MAX_CONNECTIONS', () => {
  it('closes connections past the limit on arrival; a freed place is taken again', async () => {
    const held = await Promise.all(Array.from({ length: 4 }, () => connect()))
    try {
      const extra = await connect()
      const { ms, data } = await closed(extra, Date.now())
      expect(ms).toBeLessThan(1000)
      expect(data).toBe('')
    } finally {
      for (const s of held) s.destroy()
    }
    await new Promise((r) => setTimeout(r, 100))
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)
  })
})

describe('headers trickled one line at a time (slow-loris)', () => {
  it('are cut at the headers timeout (REQUEST_TIMEOUT here, at most 10 s)', async () => {
    let n = 0
    const slow = await trickle('GET /healthz HTTP/1.1\r\nHost: x\r\n', () => `X-Slow-${n++}: a\r\n`, 300)
    try {
      expectCutAtTimeout(await slow.end)
    } finally {
      slow.stop()
    }
  })
})

/** A request that starts with `head` and then sends `next()` every `everyMs`, until stopped. */
async function trickle(head: string, next: () => string, everyMs: number) {
  const socket = await connect()
  const end = closed(socket, Date.now())
  socket.write(head)
  const timer = setInterval(() => socket.writable && socket.write(next()), everyMs)
  return {
    end,
    stop() {
      clearInterval(timer)
      socket.destroy()
    },
  }
}

/** REQUEST_TIMEOUT is 2 s: cut within it and the one-second check (before: up to 2 x 30 s). */
function expectCutAtTimeout({ ms, data }: { ms: number; data: string }) {
  expect(ms).toBeGreaterThanOrEqual(1900)
  expect(ms).toBeLessThan(2000 + 2500)
  expect(data === '' || data.startsWith('HTTP/1.1 408')).toBe(true)
}

/** A raw request on a fresh socket; resolves with everything the server sent before closing. */
async function raw(request: string): Promise<string> {
  const socket = await connect()
  const end = closed(socket, Date.now())
  socket.on('error', () => {})
  socket.write(request)
  const { data } = await end
  return data
}

describe('header floods', () => {
  it('one 64 KiB header, or thousands of small ones, is 431 and the server keeps serving', async () => {
    const big = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`)
    expect(big).toMatch(/^HTTP\/1\.1 431/)
    const many = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 5000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`)
    expect(many).toMatch(/^HTTP\/1\.1 431/)
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)
  })
})

/**
 * Sends `total` bytes of body at the enroll endpoint (1 MiB limit) in 64 KiB writes, as a device or a
 * proxy would, and reads the answer: the 413 must reach the client although it is still writing.
 */
function postLarge(headers: Record<string, string | number>, total: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/api/mdm/apple/enroll', headers: { 'content-type': 'application/pkcs7-signature', ...headers } }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    const chunk = Buffer.alloc(64 * 1024, 0x30)
    let sent = 0
    const write = () => {
      while (sent < total) {
        sent += chunk.length
        if (!req.write(chunk)) return void req.once('drain', write)
      }
      req.end()
    }
    write()
  })
}

describe('an oversized body', () => {
  it('declared by Content-Length: a 413 JSON answer the client reads', async () => {
    const total = 4 * 1024 * 1024
    const res = await postLarge({ 'content-length': total }, total)
    expect(res.status).toBe(413)
    expect(JSON.parse(res.body)).toMatchObject({ error: 'payload_too_large' })
  })

  it('sent chunked without a length: a 413 JSON answer the client reads', async () => {
    const res = await postLarge({ 'transfer-encoding': 'chunked' }, 4 * 1024 * 1024)
    expect(res.status).toBe(413)
    expect(JSON.parse(res.body)).toMatchObject({ error: 'payload_too_large' })
  })
})

describe('deep nesting in JSON', () => {
  it('a 10,000-deep (and a 500,000-deep) admin API body is a 400, not a crash', async () => {
    for (const depth of [10_000, 500_000]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/admin/teams',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload: `{"name":${'['.repeat(depth)}${']'.repeat(depth)}}`,
      })
      expect(res.statusCode, res.body).toBe(400)
      expect(Object.keys(res.json()).sort()).toEqual(['error', 'message'])
    }
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)
  })
})
