/**
 * `npm run doctor` (issue 17) against real peers: the real app behind a TLS-terminating proxy (SERVER_URL
 * https://mdm.example.test), the company's web server for example.test (https, serving or redirecting
 * discovery), a SAML IdP's metadata (samlify), an OpenID provider over https (oidc-provider), certificates
 * generated for each case. Names resolve through the doctor's --connect-to, as an administrator checks a
 * proxy before DNS points at it. A good configuration passes every check; each broken one fails (or warns)
 * on its own line with its message; the configuration a bare `npm start` uses passes with warnings.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { formatLine, runDoctor, type CheckResult, type DoctorOptions } from '../../src/cli/doctor/index.js'
import { parseConnectTo } from '../../src/cli/doctor/net.js'
import { loadConfig } from '../../src/config/index.js'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'
import { openDatabase } from '../../src/storage/database.js'
import { migrate } from '../../src/storage/migrate.js'
import { ensureTeamNamed } from '../../src/storage/teams.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { createTestDatabase } from '../helpers/database.js'
import { createPushIdentity, type PushIdentityFixture } from '../helpers/fake-apns.js'
import { startTestIdp, type TestIdp as OidcIdp } from '../helpers/oidc-idp.js'
import { createTestIdp, type IdpKeys, type TestIdp as SamlIdp } from '../helpers/saml-idp.js'
import { freePort } from '../helpers/ports.js'
import { createTlsCertificate, SSL_OP_NO_EXTENDED_MASTER_SECRET, startHttpsServer, startTlsProxy, type Peer } from '../helpers/tls-peer.js'

const ROOT = new URL('../../', import.meta.url).pathname
const DAY = 86_400_000
const MIGRATIONS = readdirSync(path.join(ROOT, 'prisma/migrations'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()
const cert = createTlsCertificate({ names: ['mdm.example.test', 'example.test', 'idp.example.test'] })
const tmp = mkdtempSync(path.join(tmpdir(), 'byod-mdm-doctor-'))
const day = (d: Date) => d.toISOString().slice(0, 10)

let t: TestApp
let appPort: number
/** TLS in front of the app: what SERVER_URL reaches. */
let front: Peer
/** The company's web server for example.test; what it does with discovery is up to each test. */
let company: Peer
let companyMode: 'proxy' | 'redirect-keep' | 'redirect-drop' | 'html' | 'elsewhere' = 'proxy'
let saml: SamlIdp
let oidc: OidcIdp
let push: PushIdentityFixture
const peers: Peer[] = []

async function idpKeys(notBefore: Date, notAfter: Date): Promise<IdpKeys> {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({ subject: [['CN', 'Doctor test IdP']], keys, notBefore, notAfter, keyUsage: ['digitalSignature'] })
  return { certificatePem: certificate.toString(), privateKeyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
}

/** A certificate + key pair as PEM, self-signed, for SCEP_CA_* and PROFILE_SIGNING_*. */
async function identityPem(cn: string, notBefore: Date, notAfter: Date, ca: boolean): Promise<{ cert: string; key: string }> {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({ subject: [['CN', cn]], keys, notBefore, notAfter, ca, keyUsage: ca ? ['keyCertSign', 'digitalSignature', 'keyEncipherment'] : ['digitalSignature'] })
  return { cert: certificate.toString(), key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
}

function forward(req: http.IncomingMessage, res: http.ServerResponse): void {
  const upstream = http.request({ host: '127.0.0.1', port: appPort, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(res)
  })
  upstream.on('error', () => res.writeHead(502).end())
  req.pipe(upstream)
}

beforeAll(async () => {
  t = await buildTestApp({ env: { ENROLL_DOMAINS: 'example.test' } })
  await t.app.listen({ port: 0, host: '127.0.0.1' })
  appPort = (t.app.server.address() as { port: number }).port
  front = await startTlsProxy(cert, { port: appPort })
  company = await startHttpsServer(cert, (req, res) => {
    if (companyMode === 'proxy') return forward(req, res)
    if (companyMode === 'redirect-keep') return void res.writeHead(307, { location: `https://mdm.example.test${req.url}` }).end()
    if (companyMode === 'redirect-drop') return void res.writeHead(307, { location: 'https://mdm.example.test/.well-known/com.apple.remotemanagement' }).end()
    if (companyMode === 'elsewhere') {
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ Servers: [{ Version: 'mdm-byod', BaseURL: 'https://mdm.other.test/api/mdm/apple/enroll/abcdefghijklmnopqrstuvwx' }] }))
    }
    res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body>Not Found</body></html>')
  })
  peers.push(front, company)
  saml = await createTestIdp({ keys: await idpKeys(new Date(Date.now() - DAY), new Date(Date.now() + 365 * DAY)) })
  oidc = await startTestIdp({ tls: { key: cert.keyPem, cert: cert.certPem, host: 'idp.example.test' } })
  push = await createPushIdentity()
}, 120_000)

afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()))
  await oidc?.close()
  await t?.close()
  rmSync(tmp, { recursive: true, force: true })
})

const essoFile = path.join(tmp, 'sso.json')
writeFileSync(essoFile, JSON.stringify({ ExtensionIdentifier: 'com.example.sso.extension', TeamIdentifier: 'ABCDE12345', Type: 'Redirect', URLs: ['https://login.example.com/'] }))

/** A production-like configuration: every check can pass. */
function goodEnv(): Record<string, string> {
  return {
    SERVER_URL: 'https://mdm.example.test',
    SERVER_SECRET: t.config.serverSecret,
    DATA_DIR: path.join(tmp, 'unused'),
    ...(t.database.url ? { DATABASE_URL: t.database.url } : {}),
    ENROLL_DOMAINS: 'example.test',
    SAML_IDP_METADATA: saml.metadata,
    OIDC_ISSUER: oidc.issuer,
    OIDC_CLIENT_ID: oidc.clientId,
    OIDC_CLIENT_SECRET: oidc.clientSecret,
    OIDC_HTTP_TIMEOUT: '5s',
    APNS_CERT: push.certPem,
    APNS_KEY: push.keyPem,
    APNS_TOPIC: push.topic,
    ESSO_EXTENSIBLE_SSO: essoFile,
    ESSO_ITUNES_STORE_ID: '123456789',
    ESSO_ASSOCIATED_DOMAINS: 'authsrv:login.example.com',
  }
}

/** The doctor in-process, trusting the test certificate, with the test names mapped to local peers. */
function doctor(env: Record<string, string | undefined>, options: { serverPort?: number; companyPort?: number; trust?: boolean; database?: boolean } & Omit<DoctorOptions, 'connectTo'> = {}): Promise<CheckResult[]> {
  const { serverPort = front.port, companyPort = company.port, trust = true, database = true, ...rest } = options
  return runDoctor(env, {
    ca: trust ? [cert.certPem] : undefined,
    connectTo: [parseConnectTo(`mdm.example.test:443:127.0.0.1:${serverPort}`), parseConnectTo(`example.test:443:127.0.0.1:${companyPort}`), parseConnectTo('idp.example.test::127.0.0.1:')],
    databaseOptions: database ? t.database.options : undefined,
    timeoutMs: 5000,
    ...rest,
  })
}

function line(results: CheckResult[], id: string): CheckResult {
  const found = results.find((r) => r.id === id)
  if (!found) throw new Error(`no ${id} line in:\n${results.map(formatLine).join('\n')}`)
  return found
}

const statuses = (results: CheckResult[]) => Object.fromEntries(results.map((r) => [r.id, r.status]))

/** An ABM connection as an upload stores it (services/abm.ts): the doctor reads only its expiry and account. */
async function connectAbm(tokenExpiresAt: Date) {
  const sealed = new Uint8Array(new ArrayBuffer(16))
  const data = { tokenCiphertext: sealed, tokenNonce: sealed, tokenTag: sealed, tokenExpiresAt, serverUuid: 'server-uuid', account: { server_name: 'Doctor test' }, accountCheckedAt: new Date() }
  await t.app.db.prisma.abmConnection.upsert({ where: { id: 'default' }, create: { id: 'default', ...data }, update: data })
}

describe('a good configuration', () => {
  it('passes every check, one line each', async () => {
    await connectAbm(new Date(Date.now() + 200 * 86_400_000))
    const results = await doctor(goodEnv()).finally(() => t.app.db.prisma.abmConnection.deleteMany())
    expect(results.filter((r) => r.status !== 'ok').map(formatLine)).toEqual([])
    expect(results.map((r) => r.id)).toEqual(['configuration', 'database', 'server-url', 'server-reachable', 'server-tls', 'saml', 'oidc', 'scep-ca', 'profile-signer', 'apns', 'esso', 'abm', 'well-known:example.test', 'tls:example.test'])
    expect(line(results, 'database').message).toContain(`all ${MIGRATIONS.length} migrations applied`)
    expect(line(results, 'saml').message).toContain(saml.entityId)
    expect(line(results, 'oidc').message).toContain(oidc.clientId)
    expect(line(results, 'scep-ca').message).toContain(day(new Date(t.app.keys.scepCa.certificate.validTo)))
    expect(line(results, 'apns').message).toContain(push.topic)
    expect(line(results, 'abm').message).toContain('Doctor test')
    expect(line(results, 'well-known:example.test').message).toMatch(/pointing at this server/)
    expect(line(results, 'server-tls').message).toMatch(/TLS ?1\.3/)
    expect(line(results, 'server-reachable').message).toContain('this server')
    for (const r of results) expect(formatLine(r)).toMatch(new RegExp(`^${r.label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\.+ ok {4}\\S`))
  })
})

describe('the configuration a bare npm start uses', () => {
  it('passes with warnings that say what production needs, before and after the first start, and creates nothing', async () => {
    const dataDir = path.join(tmp, 'bare', 'data')
    const env = { DATA_DIR: dataDir, PORT: String(await freePort()) }
    const before = await runDoctor(env, { timeoutMs: 5000 })
    expect(before.filter((r) => r.status === 'fail').map(formatLine)).toEqual([])
    expect(existsSync(dataDir)).toBe(false)
    expect(line(before, 'database')).toMatchObject({ status: 'warn', message: expect.stringMatching(/no embedded database .* yet/), fix: expect.stringMatching(/npm start creates it/) })
    expect(line(before, 'scep-ca').status).toBe('warn')

    // The first start creates the database and the keys.
    const app = await buildApp(loadConfig({ ...env, LOG_LEVEL: 'silent' }))
    await app.close()
    const after = await runDoctor(env, { timeoutMs: 5000 })
    expect(after.filter((r) => r.status === 'fail').map(formatLine)).toEqual([])
    expect(statuses(after)).toMatchObject({ configuration: 'ok', database: 'ok', 'scep-ca': 'ok', 'profile-signer': 'ok', 'server-url': 'warn', 'server-reachable': 'warn', saml: 'warn', apns: 'warn', 'server-tls': 'skipped', oidc: 'skipped', esso: 'skipped', 'well-known': 'skipped' })
    expect(line(after, 'server-url').fix).toMatch(/https/)
    expect(line(after, 'server-reachable').message).toMatch(/server not running/)
    expect(line(after, 'saml').message).toMatch(/development sign-in/)
    expect(line(after, 'saml').fix).toMatch(/SAML_IDP_METADATA/)
    expect(line(after, 'apns').fix).toMatch(/APNS_CERT/)
    expect(line(after, 'profile-signer').message).toMatch(/self-signed/)
  }, 120_000)
})

describe('configuration', () => {
  it('is one failure naming the variable; nothing else can be checked without SERVER_URL', async () => {
    const results = await doctor({ ...goodEnv(), SERVER_URL: 'http://mdm.example.com' })
    const failures = results.filter((r) => r.status === 'fail')
    expect(failures).toHaveLength(1)
    expect(failures[0]).toMatchObject({ label: 'configuration', message: expect.stringMatching(/^SERVER_URL: must be an https:\/\/ URL/), fix: expect.stringContaining('SERVER_URL') })
    expect(results.filter((r) => r.label !== 'configuration').every((r) => r.status === 'skipped')).toBe(true)
  })

  it('names APNS_KEY when the key does not belong to the certificate, and still runs the other checks', async () => {
    const other = await createPushIdentity()
    const results = await doctor({ ...goodEnv(), APNS_KEY: other.keyPem })
    expect(results.filter((r) => r.status === 'fail').map((r) => r.message)).toEqual([expect.stringMatching(/^APNS_KEY: the private key does not belong to the push certificate/)])
    expect(line(results, 'apns')).toMatchObject({ status: 'skipped', message: expect.stringContaining('APNS_KEY') })
    expect(statuses(results)).toMatchObject({ database: 'ok', saml: 'ok', esso: 'ok', 'well-known:example.test': 'ok' })
  })

  it('names APNS_TOPIC when it is not the certificate\'s topic', async () => {
    const results = await doctor({ ...goodEnv(), APNS_TOPIC: 'com.apple.mgmt.External.00000000-0000-0000-0000-000000000000' })
    expect(line(results, `configuration:APNS_TOPIC`)).toMatchObject({ status: 'fail', message: expect.stringContaining(push.topic) })
  })

  it('names SAML_IDP_METADATA when the metadata does not parse, and skips both sign-in checks', async () => {
    const results = await doctor({ ...goodEnv(), SAML_IDP_METADATA: '<html><body>Sign in</body></html>' })
    expect(line(results, 'configuration:SAML_IDP_METADATA')).toMatchObject({ status: 'fail', message: expect.stringMatching(/^SAML_IDP_METADATA: .*SAML metadata/) })
    expect(statuses(results)).toMatchObject({ saml: 'skipped', oidc: 'skipped', apns: 'ok', database: 'ok' })
  })

  it('names the ESSO variable the server would stop at', async () => {
    const results = await doctor({ ...goodEnv(), ESSO_DELIVERY: 'carrier-pigeon' })
    expect(line(results, 'configuration:ESSO_DELIVERY').status).toBe('fail')
    expect(line(results, 'esso').status).toBe('skipped')
  })
})

describe('database', () => {
  it('fails when Postgres does not answer', async () => {
    const port = await freePort()
    const env = { ...goodEnv(), DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/nothing`, DATABASE_CONNECT_TIMEOUT: '2s' }
    const results = await doctor(env, { database: false })
    expect(line(results, 'database')).toMatchObject({ status: 'fail', message: expect.stringMatching(new RegExp(`127\\.0\\.0\\.1:${port}: connection refused`)), fix: expect.stringContaining('DATABASE_URL') })
    expect(statuses(results)).toMatchObject({ 'scep-ca': 'skipped', 'profile-signer': 'skipped' })
  })

  it('warns about an empty database and fails on a migration changed after it was applied', async () => {
    const empty = await createTestDatabase()
    try {
      const results = await doctor(goodEnv(), { databaseOptions: empty.options })
      expect(line(results, 'database')).toMatchObject({ status: 'warn', message: expect.stringContaining(`none of the ${MIGRATIONS.length} migrations`), fix: expect.stringMatching(/npm run migrate/) })
      expect(line(results, 'scep-ca').status).toBe('skipped')

      const db = await openDatabase(empty.options)
      const session = await db.openSession()
      await migrate(session)
      await session.query('UPDATE schema_migrations SET checksum = $1 WHERE name = $2', ['0'.repeat(64), MIGRATIONS[1]])
      await session.close()
      await db.close()
      const changed = await doctor(goodEnv(), { databaseOptions: empty.options })
      expect(line(changed, 'database')).toMatchObject({ status: 'fail', message: expect.stringContaining(`migration ${MIGRATIONS[1]} changed`) })
    } finally {
      await empty.drop()
    }
  }, 60_000)
})

describe('SERVER_URL', () => {
  it('warns "server not running" when nothing listens behind it', async () => {
    const results = await doctor(goodEnv(), { serverPort: await freePort() })
    expect(line(results, 'server-reachable')).toMatchObject({ status: 'warn', message: expect.stringMatching(/^server not running/) })
    expect(line(results, 'server-tls').status).toBe('fail')
  })

  it('fails when it leads to something that is not this server', async () => {
    companyMode = 'html'
    const results = await doctor(goodEnv(), { serverPort: company.port })
    companyMode = 'proxy'
    expect(line(results, 'server-reachable')).toMatchObject({ status: 'fail', message: expect.stringMatching(/answered 404 text\/html.*SERVER_URL leads elsewhere/) })
  })

  it('fails when it reaches a server that runs with another database', async () => {
    const other = await buildTestApp({ env: { ENROLL_DOMAINS: 'example.test' } })
    try {
      await other.app.listen({ port: 0, host: '127.0.0.1' })
      const proxy = await startTlsProxy(cert, { port: (other.app.server.address() as { port: number }).port })
      try {
        const results = await doctor(goodEnv(), { serverPort: proxy.port })
        expect(line(results, 'server-reachable')).toMatchObject({ status: 'fail', message: expect.stringMatching(/names a team this database does not know/) })
      } finally {
        await proxy.close()
      }
    } finally {
      await other.close()
    }
  }, 60_000)

  it('fails when its certificate is not trusted or has expired', async () => {
    const untrusted = await doctor(goodEnv(), { trust: false })
    expect(line(untrusted, 'server-reachable')).toMatchObject({ status: 'fail', message: expect.stringMatching(/SELF_SIGNED|UNABLE_TO_VERIFY/) })
    expect(line(untrusted, 'server-tls').status).toBe('fail')

    const expired = createTlsCertificate({ names: ['mdm.example.test'], notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) })
    const proxy = await startTlsProxy(expired, { port: appPort })
    try {
      const results = await runDoctor(goodEnv(), { ca: [expired.certPem], connectTo: [parseConnectTo(`mdm.example.test:443:127.0.0.1:${proxy.port}`)], databaseOptions: t.database.options, timeoutMs: 5000 })
      expect(line(results, 'server-reachable')).toMatchObject({ status: 'fail', message: expect.stringContaining('CERT_HAS_EXPIRED') })
      expect(line(results, 'server-tls')).toMatchObject({ status: 'fail', message: expect.stringContaining('CERT_HAS_EXPIRED') })
    } finally {
      await proxy.close()
    }
  })
})

describe("TLS against Apple's rules", () => {
  async function tlsLine(options: import('node:tls').TlsOptions): Promise<CheckResult> {
    const proxy = await startTlsProxy(cert, { port: appPort }, options)
    try {
      return line(await doctor(goodEnv(), { serverPort: proxy.port }), 'server-tls')
    } finally {
      await proxy.close()
    }
  }

  it('passes TLS 1.2 with ECDHE, AES-GCM and the Extended Master Secret', async () => {
    expect(await tlsLine({ maxVersion: 'TLSv1.2' })).toMatchObject({ status: 'ok', message: expect.stringMatching(/TLS ?1\.2 with .*ECDHE.*AES.*GCM.*Extended Master Secret/) })
  })

  it('fails TLS 1.2 without the Extended Master Secret', async () => {
    expect(await tlsLine({ maxVersion: 'TLSv1.2', secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET })).toMatchObject({ status: 'fail', message: expect.stringContaining('without the Extended Master Secret') })
  })

  it('warns when TLS 1.3 is offered but its TLS 1.2 lacks the Extended Master Secret', async () => {
    expect(await tlsLine({ secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET })).toMatchObject({ status: 'warn', message: expect.stringMatching(/TLS ?1\.3.*lacks the Extended Master Secret/) })
  })

  it('fails a server that offers only CBC suites', async () => {
    expect(await tlsLine({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384' })).toMatchObject({ status: 'fail', message: expect.stringContaining('neither TLS 1.3 nor TLS 1.2 with ECDHE and AES-GCM') })
  })
})

describe('sign-in', () => {
  it('fails SAML metadata whose signing certificate has expired, and warns when it expires soon', async () => {
    const expiredIdp = await createTestIdp({ keys: await idpKeys(new Date(Date.now() - 400 * DAY), new Date(Date.now() - DAY)) })
    const expired = await doctor({ ...goodEnv(), SAML_IDP_METADATA: expiredIdp.metadata })
    expect(line(expired, 'saml')).toMatchObject({ status: 'fail', message: expect.stringMatching(/no signing certificate .* valid now.*expired on/), fix: expect.stringContaining('SAML_IDP_METADATA') })

    const notAfter = new Date(Date.now() + 10 * DAY)
    const soonIdp = await createTestIdp({ keys: await idpKeys(new Date(Date.now() - DAY), notAfter) })
    const soon = await doctor({ ...goodEnv(), SAML_IDP_METADATA: soonIdp.metadata })
    expect(line(soon, 'saml')).toMatchObject({ status: 'warn', message: expect.stringContaining(`expires in 10 days (${day(notAfter)})`) })
  })

  it('fails an OpenID client whose secret the IdP refuses', async () => {
    const results = await doctor({ ...goodEnv(), OIDC_CLIENT_SECRET: 'not-the-secret' })
    expect(line(results, 'oidc')).toMatchObject({ status: 'fail', message: expect.stringContaining('invalid_client') })
  })

  it('skips the OpenID provider when this machine cannot resolve it', async () => {
    const results = await doctor({ ...goodEnv(), OIDC_ISSUER: 'https://idp.example.invalid' })
    expect(line(results, 'oidc')).toMatchObject({ status: 'skipped', message: expect.stringMatching(/cannot reach idp\.example\.invalid.*ENOTFOUND|EAI_AGAIN/) })
  })

  it('fails the development sign-in on a public SERVER_URL', async () => {
    const env = { ...goodEnv(), ALLOW_DEV_SIGNIN: 'true' } as Record<string, string | undefined>
    delete env.SAML_IDP_METADATA
    const results = await doctor(env)
    expect(line(results, 'saml')).toMatchObject({ status: 'fail', message: expect.stringContaining('ALLOW_DEV_SIGNIN=true with the public SERVER_URL') })
  })
})

describe('the server keys', () => {
  it('fails an expired SCEP CA, one that is not a CA, and warns about a profile signer near expiry', async () => {
    const pastEnd = new Date(Date.now() - DAY)
    const past = await identityPem('Old CA', new Date(Date.now() - 400 * DAY), pastEnd, true)
    const soonAfter = new Date(Date.now() + 10 * DAY)
    const soon = await identityPem('Soon signer', new Date(Date.now() - DAY), soonAfter, false)
    const results = await doctor({ ...goodEnv(), SCEP_CA_CERT: past.cert, SCEP_CA_KEY: past.key, PROFILE_SIGNING_CERT: soon.cert, PROFILE_SIGNING_KEY: soon.key })
    expect(line(results, 'scep-ca')).toMatchObject({ status: 'fail', message: expect.stringContaining(`expired on ${day(pastEnd)}`), fix: expect.stringContaining('SCEP_CA_CERT') })
    expect(line(results, 'profile-signer')).toMatchObject({ status: 'warn', message: expect.stringContaining(`expires in 10 days (${day(soonAfter)})`) })

    const leaf = await identityPem('Not a CA', new Date(Date.now() - DAY), new Date(Date.now() + 365 * DAY), false)
    const notCa = await doctor({ ...goodEnv(), SCEP_CA_CERT: leaf.cert, SCEP_CA_KEY: leaf.key })
    expect(line(notCa, 'scep-ca')).toMatchObject({ status: 'fail', message: expect.stringContaining('is not a CA certificate') })
  })

  it('fails stored keys that SERVER_SECRET cannot decrypt', async () => {
    const results = await doctor({ ...goodEnv(), SERVER_SECRET: 'another-secret-0123456789abcdef0123456789' })
    expect(line(results, 'scep-ca')).toMatchObject({ status: 'fail', message: expect.stringContaining('SERVER_SECRET differs'), fix: expect.stringContaining('SERVER_SECRET') })
    expect(line(results, 'profile-signer').status).toBe('fail')
  })
})

describe('APNs', () => {
  it('fails an expired push certificate and warns about one near expiry', async () => {
    const old = await createPushIdentity({ notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) })
    const expired = await doctor({ ...goodEnv(), APNS_CERT: old.certPem, APNS_KEY: old.keyPem, APNS_TOPIC: old.topic })
    expect(line(expired, 'apns')).toMatchObject({ status: 'fail', message: expect.stringMatching(/expired on .*renew/) })

    const notAfter = new Date(Date.now() + 10 * DAY)
    const ending = await createPushIdentity({ notAfter })
    const soon = await doctor({ ...goodEnv(), APNS_CERT: ending.certPem, APNS_KEY: ending.keyPem, APNS_TOPIC: ending.topic })
    expect(line(soon, 'apns')).toMatchObject({ status: 'warn', message: expect.stringContaining(`expires in 10 days (${day(notAfter)})`) })
  })
})

describe('Enrollment SSO', () => {
  it("fails a team whose stored settings break Apple's rules", async () => {
    const team = await ensureTeamNamed(t.app.db.prisma, 'Kiosks')
    // As an older version might have stored them: a payload Type the rules refuse today.
    await t.app.db.prisma.team.update({
      where: { id: team.id },
      data: { essoSettings: { itunes_store_id: 123456789, extensible_sso: [{ ExtensionIdentifier: 'com.example.sso.extension', TeamIdentifier: 'ABCDE12345', Type: 'Kerberos', Realm: 'EXAMPLE.COM' }] } },
    })
    try {
      const results = await doctor(goodEnv())
      expect(line(results, 'esso')).toMatchObject({ status: 'fail', message: expect.stringMatching(/team "Kiosks" would break Apple's rules: .*Type/), fix: expect.stringContaining(`/api/v1/admin/teams/${team.id}/esso`) })
    } finally {
      await t.app.db.prisma.team.delete({ where: { id: team.id } })
    }
  })
})

describe('Apple Business Manager', () => {
  it('skips a server that is not connected, fails an expired server token and warns about one near expiry', async () => {
    expect(line(await doctor(goodEnv()), 'abm')).toMatchObject({ status: 'skipped', message: expect.stringMatching(/not connected/) })
    try {
      await connectAbm(new Date(Date.now() - 86_400_000))
      expect(line(await doctor(goodEnv()), 'abm')).toMatchObject({ status: 'fail', message: expect.stringMatching(/server token expired on .*download a new token/) })
      await connectAbm(new Date(Date.now() + 10 * 86_400_000))
      expect(line(await doctor(goodEnv()), 'abm')).toMatchObject({ status: 'warn', message: expect.stringMatching(/expires on .* \(in (9|10) days\)/) })
    } finally {
      await t.app.db.prisma.abmConnection.deleteMany()
    }
  })
})

describe('.well-known on the enrollment domains', () => {
  async function wellKnown(mode: typeof companyMode, env = goodEnv()): Promise<CheckResult> {
    companyMode = mode
    try {
      return line(await doctor(env), 'well-known:example.test')
    } finally {
      companyMode = 'proxy'
    }
  }

  it('follows a redirect that keeps the query string', async () => {
    expect(await wellKnown('redirect-keep')).toMatchObject({ status: 'ok', message: expect.stringMatching(/after 307 mdm\.example\.test.*pointing at this server/) })
  })

  it('fails a redirect that drops the query string', async () => {
    expect(await wellKnown('redirect-drop')).toMatchObject({ status: 'fail', message: expect.stringContaining('dropping the query string'), fix: expect.stringContaining('$request_uri') })
  })

  it('fails an HTML page', async () => {
    expect(await wellKnown('html')).toMatchObject({ status: 'fail', message: expect.stringMatching(/answers 404 text\/html.*not JSON/) })
  })

  it('fails JSON that points at another server', async () => {
    expect(await wellKnown('elsewhere')).toMatchObject({ status: 'fail', message: expect.stringContaining('points at https://mdm.other.test/') })
  })

  it("fails an answer for another team than ENROLL_DOMAINS maps the domain to", async () => {
    const team = await ensureTeamNamed(t.app.db.prisma, 'Contractors')
    try {
      expect(await wellKnown('proxy', { ...goodEnv(), ENROLL_DOMAINS: 'example.test=Contractors' })).toMatchObject({ status: 'fail', message: expect.stringContaining('maps example.test to team "Contractors"') })
    } finally {
      await t.app.db.prisma.team.delete({ where: { id: team.id } })
    }
  })

  it('skips a domain this machine cannot resolve, and its TLS', async () => {
    const results = await doctor({ ...goodEnv(), ENROLL_DOMAINS: 'example.invalid' })
    expect(line(results, 'well-known:example.invalid')).toMatchObject({ status: 'skipped', message: expect.stringMatching(/ENOTFOUND|EAI_AGAIN/) })
    expect(line(results, 'tls:example.invalid').status).toBe('skipped')
  })
})

describe('npm run doctor as a process', () => {
  function run(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/doctor.ts'], { cwd: ROOT, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })))
  }

  it('exits 0 with warnings for a bare configuration, 1 when a check fails', async () => {
    const port = String(await freePort())
    const [bare, broken] = await Promise.all([run({ DATA_DIR: path.join(tmp, 'process', 'data'), PORT: port }), run({ DATA_DIR: path.join(tmp, 'process2'), SERVER_URL: 'http://mdm.example.com' })])
    expect(bare.code, bare.output).toBe(0)
    expect(bare.output).toMatch(/^SERVER_URL \.+ warn {2}http:\/\/localhost:\d+ is plain http/m)
    expect(bare.output).not.toMatch(/ fail {2}/)
    expect(broken.code, broken.output).toBe(1)
    expect(broken.output).toMatch(/^configuration \.+ fail {2}SERVER_URL: must be an https:\/\/ URL/m)
  }, 90_000)

  it('says the embedded database is in use while the server runs on it, and reaches that server', async () => {
    const dataDir = path.join(tmp, 'running', 'data')
    const port = await freePort()
    const env = { DATA_DIR: dataDir, PORT: String(port) }
    const app = await buildApp(loadConfig({ ...env, LOG_LEVEL: 'silent' }))
    try {
      await app.listen({ port, host: '127.0.0.1' })
      const { code, output } = await run(env)
      expect(code, output).toBe(0)
      expect(output).toMatch(new RegExp(`^database \\.+ skipped: the embedded database in ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by process ${process.pid}`, 'm'))
      expect(output).toMatch(/^SERVER_URL reachable \.+ ok {4}/m)
      expect(output).toMatch(/^SCEP CA \.+ skipped: the database could not be read/m)
    } finally {
      await app.close()
    }
  }, 120_000)
})
