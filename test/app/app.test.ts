import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { buildTestApp, testConfig, type TestApp } from '../helpers/app.js'
import { createTestDatabase, hasPostgres } from '../helpers/database.js'
import { createProxiedTestDatabase } from '../helpers/tcp-proxy.js'

const open: TestApp[] = []
afterEach(async () => {
  while (open.length) await open.pop()!.close()
})
async function testApp(options?: Parameters<typeof buildTestApp>[0]) {
  const t = await buildTestApp(options)
  open.push(t)
  return t
}

describe('health', () => {
  it('answers /healthz and /readyz when the database is migrated', async () => {
    const { app } = await testApp()
    expect((await app.inject('/healthz')).json()).toEqual({ status: 'ok' })
    const ready = await app.inject('/readyz')
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toEqual({ status: 'ready' })
  })

  it('reports not ready while a migration this code knows is missing from the database', async () => {
    const { app } = await testApp()
    const last = app.migrations.at(-1)!.name
    await app.db.prisma.$executeRawUnsafe('DELETE FROM schema_migrations WHERE name = $1', last)
    const res = await app.inject('/readyz')
    expect(res.statusCode).toBe(503)
    expect(res.json()).toEqual({ status: 'migrations_pending', pending: [last] })
  })
})

describe('errors', () => {
  it('answers unknown routes with JSON, never an HTML page', async () => {
    const { app } = await testApp()
    const res = await app.inject('/.well-known/nothing-here')
    expect(res.statusCode).toBe(404)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.json()).toMatchObject({ error: 'not_found' })
  })

  it('does not echo the path of a refused URL: unknown, too long, malformed (SECURITY.md row 29)', async () => {
    const { app } = await testApp()
    const marker = 'ECHO-MARKER'
    for (const [method, url, status] of [
      ['GET', `/nothing/${marker}`, 404],
      ['GET', `/mdm/sso/${marker}${'A'.repeat(300)}`, 414],
      ['POST', `/api/mdm/apple/enroll/${marker}${'C'.repeat(300)}`, 414],
    ] as const) {
      const res = await app.inject({ method, url })
      expect(res.statusCode, url).toBe(status)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      expect(res.body).not.toContain(marker)
    }
  })

  it('refuses compressed bodies with 415 and oversized bodies with 413', async () => {
    const { app } = await testApp()
    app.post('/test-echo', async (req) => ({ size: JSON.stringify(req.body).length }))
    const gz = await app.inject({ method: 'POST', url: '/test-echo', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: '{}' })
    expect(gz.statusCode).toBe(415)
    expect(gz.json()).toMatchObject({ error: 'unsupported_media_type' })
    const big = await app.inject({ method: 'POST', url: '/test-echo', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ a: 'x'.repeat(2 * 1024 * 1024) }) })
    expect(big.statusCode).toBe(413)
    expect(big.json()).toMatchObject({ error: 'payload_too_large' })
  })

  it('never shows internals in a 500', async () => {
    const { app, logLines } = await testApp()
    app.get('/test-boom', async () => {
      throw new Error('connection string postgres://admin:hunter2@db/internal exploded')
    })
    const res = await app.inject('/test-boom')
    expect(res.statusCode).toBe(500)
    expect(res.json()).toEqual({ error: 'internal_error', message: 'Internal server error' })
    expect(res.body).not.toContain('hunter2')
    expect(res.headers['x-request-id']).toBeTruthy()
    // The operator still gets the real reason, tied to the request id.
    const line = logLines.find((l) => l.includes('exploded'))
    expect(line).toContain(String(res.headers['x-request-id']))
  })
})

describe('logging', () => {
  it('keeps tokens, signatures, cookies and challenges out of the log', async () => {
    const { app, logLines } = await testApp()
    const secrets = ['TOPSECRET-bearer', 'TOPSECRET-sig', 'TOPSECRET-cookie', 'TOPSECRET-query', 'TOPSECRET-code', 'TOPSECRET-nested', 'TOPSECRET-challenge', 'TOPSECRET-saml']
    app.get('/test-log', async (req) => {
      req.log.info({ headers: req.headers, body: { accessToken: secrets[5], inner: { challenge: secrets[6] } }, SAMLResponse: secrets[7] }, 'handling')
      return {}
    })
    const res = await app.inject({
      url: `/test-log?access-token=${secrets[3]}&code=${secrets[4]}&user-identifier=alice@example.com`,
      headers: { authorization: `Bearer ${secrets[0]}`, 'mdm-signature': secrets[1], cookie: `s=${secrets[2]}` },
    })
    expect(res.statusCode).toBe(200)
    const text = logLines.join('\n')
    expect(text).toContain('handling')
    expect(text).toContain('user-identifier=alice@example.com')
    for (const s of secrets) expect(text).not.toContain(s)
  })
})

describe('key material and the default team', () => {
  it('are generated once, stored encrypted, and shared by every process on the database', async () => {
    const database = await createTestDatabase()
    const a = await testApp({ database })
    const b = await testApp({ database })
    try {
      expect(b.app.keys.scepCa.certificate.fingerprint256).toBe(a.app.keys.scepCa.certificate.fingerprint256)
      expect(b.app.keys.profileSigner.certificate.fingerprint256).toBe(a.app.keys.profileSigner.certificate.fingerprint256)
      expect(b.app.defaultTeam.enrollmentToken).toBe(a.app.defaultTeam.enrollmentToken)
      expect(a.app.defaultTeam.enrollmentToken).toMatch(/^[A-Za-z0-9_-]{32}$/)
      const rows = await a.app.db.prisma.keyMaterial.findMany()
      expect(rows.map((r) => r.name).sort()).toEqual(['profileSigner', 'scepCa'])
      // Neither the PEM nor any 32-byte run of the private key's DER appears in the stored record.
      const plain = { scepCa: a.app.keys.scepCa.privateKey, profileSigner: a.app.keys.profileSigner.privateKey }
      for (const r of rows) {
        const der = plain[r.name as keyof typeof plain].export({ type: 'pkcs8', format: 'der' })
        const stored = Buffer.concat([Buffer.from(r.keyCiphertext), Buffer.from(r.certificatePem)])
        expect(stored.toString('latin1')).not.toContain('PRIVATE KEY')
        for (let i = 0; i + 32 <= der.length; i += 32) expect(stored.includes(der.subarray(i, i + 32))).toBe(false)
      }
      expect(await a.app.db.prisma.team.count({ where: { isDefault: true } })).toBe(1)
    } finally {
      await a.close()
      await b.close()
      open.length = 0
      await database.drop()
    }
  })

  it('refuses to start with a SERVER_SECRET that cannot decrypt the stored keys', async () => {
    const database = await createTestDatabase()
    const first = await testApp({ database })
    await first.close()
    open.length = 0
    const config = testConfig({ SERVER_SECRET: 'a-completely-different-secret-of-sufficient-length' })
    await expect(buildApp(config, { databaseOptions: database.options })).rejects.toThrow(/SERVER_SECRET differs/)
    await database.drop()
  })

  it('uses key material given by the administrator instead of generating it', async () => {
    const donor = await testApp()
    const ca = donor.app.keys.scepCa
    const { app } = await testApp({
      env: { SCEP_CA_CERT: ca.certificate.toString(), SCEP_CA_KEY: ca.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string },
    })
    expect(app.keys.scepCa.certificate.fingerprint256).toBe(ca.certificate.fingerprint256)
    expect(await app.db.prisma.keyMaterial.findUnique({ where: { name: 'scepCa' } })).toBeNull()
  })
})

// Cutting the database connection needs a Postgres server behind a proxy; PGlite runs in-process.
describe.runIf(hasPostgres)('database outage', () => {
  it('answers 503 while the database is unreachable and recovers without a restart', async () => {
    const { database, proxy, drop } = await createProxiedTestDatabase()
    try {
      const t = await testApp({ database })
      t.app.get('/test-teams', async () => ({ count: await t.app.db.prisma.team.count() }))
      expect((await t.app.inject('/test-teams')).statusCode).toBe(200)

      await proxy.cut()
      const down = await t.app.inject('/test-teams')
      expect(down.statusCode).toBe(503)
      expect(down.json()).toEqual({ error: 'service_unavailable', message: expect.any(String) })
      expect(down.headers['retry-after']).toBe('5')
      expect((await t.app.inject('/readyz')).statusCode).toBe(503)

      await proxy.restore()
      const up = await t.app.inject('/test-teams')
      expect(up.statusCode).toBe(200)
      expect(up.json()).toEqual({ count: 1 })
    } finally {
      while (open.length) await open.pop()!.close()
      await drop()
    }
  })
})
