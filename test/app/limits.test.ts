/**
 * Slow and idle clients cannot hold the server (SECURITY.md row 28): a body trickled byte by byte is cut
 * at REQUEST_TIMEOUT (not at twice it, as Node's 30 s check interval allowed), and connections past
 * MAX_CONNECTIONS are closed on arrival. Through a real listening socket.
 */
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../helpers/app.js'

let t: TestApp
let port: number
beforeAll(async () => {
  t = await buildTestApp({ env: { REQUEST_TIMEOUT: '2s', MAX_CONNECTIONS: '4' } })
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
    const socket = await connect()
    const start = Date.now()
    const end = closed(socket, start)
    socket.write('PUT /mdm/apple/mdm HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-apple-aspen-mdm\r\nContent-Length: 1000\r\n\r\n')
    const trickle = setInterval(() => socket.writable && socket.write('<'), 400)
    try {
      const health = await fetch(`http://127.0.0.1:${port}/healthz`)
      expect(health.status).toBe(200)
      const { ms, data } = await end
      // REQUEST_TIMEOUT is 2 s: cut within it and the one-second check (before: up to 2 x 30 s).
      expect(ms).toBeGreaterThanOrEqual(1900)
      expect(ms).toBeLessThan(2000 + 2500)
      expect(data === '' || data.startsWith('HTTP/1.1 408')).toBe(true)
    } finally {
      clearInterval(trickle)
      socket.destroy()
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
