/** The APNs client (src/push/apns.ts) against the in-process fake APNs, and against openssl s_server for TLS refusals. */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'
import { ApnsClient, backoffDelay, DEFAULT_RETRY, type ApnsClientOptions, type ApnsRequest } from '../../src/push/apns.js'
import { loadPushCredentials, type PushCredentials } from '../../src/push/credentials.js'
import { createPushIdentity, startFakeApns, type FakeApns } from '../helpers/fake-apns.js'
import { openssl, type OpensslRun } from '../helpers/openssl.js'

const DAY = 86_400_000
const FAST_RETRY = { attempts: 4, baseDelayMs: 5, maxDelayMs: 20 }

let fake: FakeApns
let creds: PushCredentials
const clients: ApnsClient[] = []

beforeAll(async () => {
  fake = await startFakeApns()
  const identity = await fake.issuePushIdentity()
  // Through the PKCS#12 form, as an administrator would upload it.
  creds = loadPushCredentials({ p12: identity.p12, password: identity.password })
})
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
})
afterAll(() => fake.close())

function client(options: Partial<ApnsClientOptions> = {}): ApnsClient {
  const c = new ApnsClient({ url: fake.url, identity: creds, ca: fake.caPem, timeoutMs: 5000, ...options })
  clients.push(c)
  return c
}

const newToken = () => randomBytes(32).toString('hex')
const push = (token: string, extra: Partial<ApnsRequest> = {}): ApnsRequest => ({ token, pushMagic: 'B2A6B8CB-2D6E-4E8B-9C38-3C4A1B9D1F00', topic: creds.topic, ...extra })
const requestsFor = (token: string) => fake.requests.filter((r) => r.token === token)

describe('delivery', () => {
  it('sends exactly the MDM push: path, body, headers, and the push certificate as client certificate', async () => {
    const token = newToken()
    const expiration = new Date(Date.now() + 3600_000)
    const result = await client().send(push(token, { expiration }))
    expect(result).toMatchObject({ status: 200, outcome: 'delivered' })
    expect(result.apnsId).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/)
    const [req] = requestsFor(token)
    expect(req).toMatchObject({ method: 'POST', path: `/3/device/${token}`, body: '{"mdm":"B2A6B8CB-2D6E-4E8B-9C38-3C4A1B9D1F00"}', clientUid: creds.topic })
    expect(req!.headers).toMatchObject({
      'apns-push-type': 'mdm',
      'apns-topic': creds.topic,
      'apns-priority': '10',
      'apns-expiration': String(Math.floor(expiration.getTime() / 1000)),
    })
    expect(req!.headers.authorization).toBeUndefined()
  })

  it('defaults the expiration to 30 days and passes priority 5 and expiration 0 through', async () => {
    const c = client()
    const a = newToken()
    await c.send(push(a))
    const expiresIn = Number(requestsFor(a)[0]!.headers['apns-expiration']) * 1000 - Date.now()
    expect(expiresIn).toBeGreaterThan(30 * DAY - 60_000)
    expect(expiresIn).toBeLessThanOrEqual(30 * DAY)
    const b = newToken()
    expect((await c.send(push(b, { priority: 5, expiration: new Date(0) }))).outcome).toBe('delivered')
    expect(requestsFor(b)[0]!.headers).toMatchObject({ 'apns-priority': '5', 'apns-expiration': '0' })
  })

  it('refuses a token that is not even-length hex without contacting APNs', async () => {
    const c = client()
    const before = fake.requests.length
    for (const token of ['', 'abc', 'zz'.repeat(32), `${'ab'.repeat(32)}/x`, 'ab'.repeat(101)]) {
      expect(await c.send(push(token))).toEqual({ status: 0, reason: 'MalformedDeviceToken', outcome: 'invalid_token' })
    }
    expect(fake.requests.length).toBe(before)
    expect(c.sessionsOpened).toBe(0)
  })

  it('lower-cases an upper-case hex token', async () => {
    const token = newToken()
    expect((await client().send(push(token.toUpperCase()))).outcome).toBe('delivered')
    expect(requestsFor(token)).toHaveLength(1)
  })
})

describe('the HTTP/2 session', () => {
  it('is one connection for many pushes, sequential and concurrent', async () => {
    const c = client()
    const before = fake.connections
    for (let i = 0; i < 10; i++) expect((await c.send(push(newToken()))).outcome).toBe('delivered')
    const tokens = Array.from({ length: 100 }, newToken)
    const results = await Promise.all(tokens.map((t) => c.send(push(t))))
    expect(results.every((r) => r.outcome === 'delivered')).toBe(true)
    expect(fake.connections - before).toBe(1)
    expect(c.sessionsOpened).toBe(1)
    expect(new Set(tokens.map((t) => requestsFor(t)[0]!.connection)).size).toBe(1)
  })

  it('stays on one connection past the server\'s SETTINGS_MAX_CONCURRENT_STREAMS (a burst refused before SETTINGS arrive is resent)', async () => {
    const narrow = await startFakeApns({ maxConcurrentStreams: 3 })
    try {
      const identity = await narrow.issuePushIdentity()
      const c = new ApnsClient({ url: narrow.url, identity, ca: narrow.caPem, timeoutMs: 5000 })
      clients.push(c)
      const results = await Promise.all(Array.from({ length: 40 }, () => c.send({ token: newToken(), pushMagic: 'm', topic: identity.topic })))
      expect(results.filter((r) => r.outcome === 'delivered')).toHaveLength(40)
      expect(narrow.connections).toBe(1)
    } finally {
      await narrow.close()
    }
  })

  it('reconnects after APNs sends GOAWAY', async () => {
    const c = client()
    expect((await c.send(push(newToken()))).outcome).toBe('delivered')
    const before = fake.connections
    await fake.goaway()
    const token = newToken()
    expect((await c.send(push(token))).outcome).toBe('delivered')
    expect(fake.connections - before).toBe(1)
    expect(c.sessionsOpened).toBe(2)
    expect(requestsFor(token)[0]!.connection).toBe(fake.connections)
  })

  it('a push in flight when GOAWAY arrives is retryable, and the retry goes out on a new connection', async () => {
    const c = client()
    const token = newToken()
    fake.respond(token, [{ hang: true }])
    const pending = c.send(push(token))
    await until(() => requestsFor(token).length === 1)
    await fake.goaway()
    expect(await pending).toMatchObject({ status: 0, reason: 'ConnectionError', outcome: 'retry' })
    expect(await c.sendWithRetry(push(token), FAST_RETRY)).toMatchObject({ outcome: 'delivered', attempts: 1 })
    expect(c.sessionsOpened).toBe(2)
  })

  it('reconnects after the connection is dropped without GOAWAY', async () => {
    const c = client()
    expect((await c.send(push(newToken()))).outcome).toBe('delivered')
    fake.dropConnections()
    // The drop may or may not have reached the client yet: at worst one retryable failure.
    expect(await c.sendWithRetry(push(newToken()), FAST_RETRY)).toMatchObject({ outcome: 'delivered' })
    expect(c.sessionsOpened).toBe(2)
  })

  it('times a push out and keeps using the session when it still answers PING', async () => {
    const c = client({ timeoutMs: 300 })
    const token = newToken()
    fake.respond(token, [{ hang: true }])
    const started = Date.now()
    expect(await c.send(push(token))).toEqual({ status: 0, reason: 'Timeout', outcome: 'retry' })
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    await new Promise((r) => setTimeout(r, 100))
    expect((await c.send(push(newToken()))).outcome).toBe('delivered')
    expect(c.sessionsOpened).toBe(1)
  })

  it('drops a session that stops answering (no PING reply) and connects afresh', async () => {
    const proxy = await startFreezableProxy(Number(new URL(fake.url).port))
    try {
      const c = client({ url: `https://localhost:${proxy.port}`, timeoutMs: 300 })
      expect((await c.send(push(newToken()))).outcome).toBe('delivered')
      proxy.freeze()
      expect(await c.send(push(newToken()))).toMatchObject({ reason: 'Timeout', outcome: 'retry' })
      // Without the PING probe every later push would time out on the dead connection too.
      expect(await c.sendWithRetry(push(newToken()), FAST_RETRY)).toMatchObject({ outcome: 'delivered' })
      expect(c.sessionsOpened).toBe(2)
    } finally {
      proxy.close()
    }
  })

  it('rejects sends after close()', async () => {
    const c = client()
    await c.send(push(newToken()))
    await c.close()
    await expect(c.send(push(newToken()))).rejects.toThrow(/closed/)
  })
})

describe('responses', () => {
  it('410 Unregistered: invalid_token, with APNs\' timestamp', async () => {
    const token = newToken()
    fake.respond(token, [{ status: 410, reason: 'Unregistered', timestamp: 1_700_000_000_000 }])
    const result = await client().sendWithRetry(push(token), FAST_RETRY)
    expect(result).toMatchObject({ status: 410, reason: 'Unregistered', timestamp: 1_700_000_000_000, outcome: 'invalid_token', attempts: 1 })
    expect(result.apnsId).toBeDefined()
  })

  it('400 BadDeviceToken and DeviceTokenNotForTopic: invalid_token, not retried', async () => {
    for (const reason of ['BadDeviceToken', 'DeviceTokenNotForTopic']) {
      const token = newToken()
      fake.respond(token, [{ status: 400, reason }])
      expect(await client().sendWithRetry(push(token), FAST_RETRY)).toMatchObject({ status: 400, reason, outcome: 'invalid_token', attempts: 1 })
      expect(requestsFor(token)).toHaveLength(1)
    }
  })

  it('429 TooManyRequests then 200: retried and delivered', async () => {
    const token = newToken()
    fake.respond(token, [{ status: 429, reason: 'TooManyRequests' }])
    expect(await client().sendWithRetry(push(token), FAST_RETRY)).toMatchObject({ status: 200, outcome: 'delivered', attempts: 2 })
    expect(requestsFor(token).map((r) => r.status)).toEqual([429, 200])
  })

  it('500 then 503 then 200: retried and delivered', async () => {
    const token = newToken()
    fake.respond(token, [{ status: 500, reason: 'InternalServerError' }, { status: 503, reason: 'ServiceUnavailable' }])
    expect(await client().sendWithRetry(push(token), FAST_RETRY)).toMatchObject({ status: 200, outcome: 'delivered', attempts: 3 })
  })

  it('503 every time: gives up after the configured attempts with outcome retry', async () => {
    const token = newToken()
    fake.respond(token, Array.from({ length: 10 }, () => ({ status: 503, reason: 'ServiceUnavailable' })))
    const result = await client().sendWithRetry(push(token), { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 })
    expect(result).toMatchObject({ status: 503, reason: 'ServiceUnavailable', outcome: 'retry', attempts: 3 })
    expect(requestsFor(token)).toHaveLength(3)
  })

  it('403 (BadCertificate, BadCertificateEnvironment): config_error, not retried', async () => {
    for (const reason of ['BadCertificate', 'BadCertificateEnvironment']) {
      const token = newToken()
      fake.respond(token, [{ status: 403, reason }])
      expect(await client().sendWithRetry(push(token), FAST_RETRY)).toMatchObject({ status: 403, reason, outcome: 'config_error', attempts: 1 })
      expect(requestsFor(token)).toHaveLength(1)
    }
  })

  it('a topic the certificate does not carry: the fake\'s own 400 TopicDisallowed, config_error', async () => {
    const token = newToken()
    const result = await client().sendWithRetry(push(token, { topic: 'com.apple.mgmt.External.someone-else' }), FAST_RETRY)
    expect(result).toMatchObject({ status: 400, reason: 'TopicDisallowed', outcome: 'config_error', attempts: 1 })
  })

  it('other refusals (413 PayloadTooLarge, 400 BadExpirationDate): error, not retried', async () => {
    for (const [status, reason] of [[413, 'PayloadTooLarge'], [400, 'BadExpirationDate']] as const) {
      const token = newToken()
      fake.respond(token, [{ status, reason }])
      expect(await client().sendWithRetry(push(token), FAST_RETRY)).toMatchObject({ status, reason, outcome: 'error', attempts: 1 })
    }
  })

  it('a refused connection is retryable', async () => {
    const c = client({ url: 'https://localhost:1' })
    expect(await c.send(push(newToken()))).toMatchObject({ status: 0, reason: 'ConnectionError', outcome: 'retry' })
  })
})

describe('backoff', () => {
  it('is full jitter under an exponential cap', () => {
    for (let attempt = 1; attempt <= 8; attempt++) {
      const cap = Math.min(DEFAULT_RETRY.maxDelayMs, DEFAULT_RETRY.baseDelayMs * 2 ** (attempt - 1))
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, DEFAULT_RETRY)
        expect(d).toBeGreaterThanOrEqual(0)
        expect(d).toBeLessThanOrEqual(cap)
      }
    }
  })
})

/**
 * APNs refuses a bad client certificate with a TLS alert. Node's TLS server cannot send one (it closes the
 * socket after the handshake), so these tests use openssl s_server, which verifies the certificate inside
 * the handshake like APNs does.
 */
describe('TLS refusal of the push certificate (openssl s_server)', () => {
  let ssl: OpensslRun
  let server: ChildProcess
  let url: string
  let caPem: string
  let signer: CertificateSigner

  beforeAll(async () => {
    ssl = openssl()
    const caKeys = await generateRsaKeyPair()
    const ca = await createSelfSigned({ subject: [['CN', 's_server CA']], keys: caKeys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), ca: true, keyUsage: ['keyCertSign'] })
    caPem = ca.toString()
    signer = await CertificateSigner.create({ certificate: ca, privateKey: caKeys.privateKey })
    const serverKeys = await generateRsaKeyPair()
    const serverCert = await signer.issue({ subject: [['CN', 'localhost']], publicKey: serverKeys.publicKey, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), keyUsage: ['digitalSignature', 'keyEncipherment'] })
    ssl.file('ca.pem', caPem)
    ssl.file('server.pem', serverCert.toString())
    ssl.file('server.key', serverKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    server = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', '-cert', 'server.pem', '-key', 'server.key', '-CAfile', 'ca.pem', '-Verify', '1', '-verify_return_error', '-alpn', 'h2'], { cwd: ssl.dir, stdio: ['pipe', 'pipe', 'pipe'] })
    const port = await new Promise<string>((resolve, reject) => {
      let out = ''
      server.stdout!.on('data', (c: Buffer) => {
        out += c.toString()
        const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out)
        if (m) resolve(m[1]!)
      })
      server.on('exit', (code) => reject(new Error(`openssl s_server exited with ${code}`)))
    })
    url = `https://localhost:${port}`
  })
  afterAll(() => {
    server?.kill()
    ssl?.close()
  })

  it('an expired push certificate: config_error (TLS alert certificate_expired)', async () => {
    const expired = await createPushIdentity({ signer, notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) })
    const c = client({ url, ca: caPem, identity: expired })
    const result = await c.sendWithRetry({ token: newToken(), pushMagic: 'm', topic: expired.topic }, FAST_RETRY)
    expect(result).toMatchObject({ status: 0, reason: 'TlsRejected', outcome: 'config_error', attempts: 1 })
    expect(result.detail).toMatch(/certificate expired/)
  })

  it('a certificate the server does not trust: config_error (TLS alert unknown_ca)', async () => {
    const foreign = await createPushIdentity()
    const c = client({ url, ca: caPem, identity: foreign })
    const result = await c.send({ token: newToken(), pushMagic: 'm', topic: foreign.topic })
    expect(result).toMatchObject({ status: 0, reason: 'TlsRejected', outcome: 'config_error' })
    expect(result.detail).toMatch(/unknown ca/)
  })

  it('a server certificate we do not trust: config_error', async () => {
    const identity = await createPushIdentity({ signer })
    const c = client({ url, ca: undefined, identity })
    expect(await c.send({ token: newToken(), pushMagic: 'm', topic: identity.topic })).toMatchObject({ status: 0, reason: 'TlsRejected', outcome: 'config_error' })
  })
})

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** A TCP relay whose existing connections can be frozen: bytes stop flowing both ways, sockets stay open. */
async function startFreezableProxy(targetPort: number): Promise<{ port: number; freeze(): void; close(): void }> {
  const pairs: [net.Socket, net.Socket][] = []
  const server = net.createServer((downstream) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    pairs.push([downstream, upstream])
    for (const s of [downstream, upstream]) s.on('error', () => {})
    downstream.pipe(upstream).pipe(downstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze() {
      for (const [down, up] of pairs.splice(0)) {
        down.unpipe(up)
        up.unpipe(down)
        down.pause()
        up.pause()
      }
    },
    close() {
      for (const [down, up] of pairs) {
        down.destroy()
        up.destroy()
      }
      server.close()
    },
  }
}
