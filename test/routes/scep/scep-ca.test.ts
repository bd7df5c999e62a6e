import { X509Certificate } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseSignedData } from '../../../src/pki/cms.js'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair } from '../../../src/pki/x509.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { hasPostgres } from '../../helpers/database.js'
import { createProxiedTestDatabase } from '../../helpers/tcp-proxy.js'
import { certRep, createEnrollment, issuedCertificate, postPkiOperation, SCEP_PATH, scepRequest } from '../../helpers/scep.js'

const run = promisify(execFile)

describe('an administrator-supplied CA with an intermediate', () => {
  let t: TestApp
  let root: X509Certificate
  let intermediate: X509Certificate
  let dir: string

  beforeAll(async () => {
    const rootKeys = await generateRsaKeyPair(2048)
    const year = 365 * 86400_000
    root = await createSelfSigned({ subject: [['CN', 'Admin Root CA']], keys: rootKeys, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 5 * year), ca: true, keyUsage: ['keyCertSign', 'cRLSign'] })
    const keys = await generateRsaKeyPair(2048)
    const signer = await CertificateSigner.create({ certificate: root, privateKey: rootKeys.privateKey })
    intermediate = await signer.issue({ subject: [['CN', 'Admin Device CA']], publicKey: keys.publicKey, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 2 * year), ca: true, keyUsage: ['keyCertSign', 'digitalSignature', 'keyEncipherment'] })
    dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-scep-ca-'))
    writeFileSync(path.join(dir, 'ca.pem'), intermediate.toString() + root.toString())
    writeFileSync(path.join(dir, 'ca.key'), keys.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    // Two variables, PEM files, the chain after the CA certificate (config.ts reads it that way).
    t = await buildTestApp({ env: { SCEP_CA_CERT: path.join(dir, 'ca.pem'), SCEP_CA_KEY: path.join(dir, 'ca.key') } })
  })
  afterAll(async () => {
    await t.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('GetCACert sends the chain as a degenerate PKCS#7 (application/x-x509-ca-ra-cert)', async () => {
    const res = await t.app.inject(`${SCEP_PATH}?operation=GetCACert`)
    expect(res.headers['content-type']).toBe('application/x-x509-ca-ra-cert')
    const certs = parseSignedData(res.rawPayload).certificates
    expect(certs.map((c) => c.fingerprint256)).toEqual([intermediate.fingerprint256, root.fingerprint256])
    writeFileSync(path.join(dir, 'chain.p7'), res.rawPayload)
    const printed = await run('openssl', ['pkcs7', '-inform', 'DER', '-in', path.join(dir, 'chain.p7'), '-print_certs', '-noout'])
    expect(printed.stdout).toContain('Admin Device CA')
  })

  it('issues under the intermediate; the certificate chains to the root', async () => {
    const e = await createEnrollment(t.app)
    const { challenge } = await e.challenge()
    const req = scepRequest(t.app, { challenge })
    const cert = issuedCertificate(certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, req.signer))
    writeFileSync(path.join(dir, 'root.pem'), root.toString())
    writeFileSync(path.join(dir, 'untrusted.pem'), intermediate.toString())
    writeFileSync(path.join(dir, 'leaf.pem'), cert.toString())
    const verify = await run('openssl', ['verify', '-CAfile', path.join(dir, 'root.pem'), '-untrusted', path.join(dir, 'untrusted.pem'), path.join(dir, 'leaf.pem')])
    expect(verify.stdout).toContain('leaf.pem: OK')
  })

  it('scepclient, which encrypts to every certificate it was given, enrolls', async () => {
    const e = await createEnrollment(t.app)
    const { challenge } = await e.challenge()
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' })
    const client = mkdtempSync(path.join(dir, 'client-'))
    const result = await run('scepclient', ['-server-url', `${address}${SCEP_PATH}`, '-private-key', path.join(client, 'key.pem'), '-certificate', path.join(client, 'cert.pem'), '-challenge', challenge], { timeout: 20_000 })
    expect(result.stdout + result.stderr).toContain('pkiStatus=SUCCESS')
    expect(new X509Certificate(readFileSync(path.join(client, 'cert.pem'))).checkIssued(intermediate)).toBe(true)
  })
})

// Cutting the database needs a Postgres server behind a proxy; PGlite runs in-process.
describe.runIf(hasPostgres)('database outage during PKIOperation', () => {
  it('answers 503 (never a FAILURE that would make the device give up), keeps the challenge, and recovers', async () => {
    const { database, proxy, drop } = await createProxiedTestDatabase()
    let t: TestApp | undefined
    try {
      t = await buildTestApp({ database })
      const e = await createEnrollment(t.app)
      const { id, challenge } = await e.challenge()
      const req = scepRequest(t.app, { challenge })

      await proxy.cut()
      const down = await postPkiOperation(t.app, req.der)
      expect(down.statusCode).toBe(503)
      expect(down.headers['retry-after']).toBe('5')
      expect(down.headers['content-type']).toMatch(/^text\/plain/)

      await proxy.restore()
      const up = await postPkiOperation(t.app, req.der)
      expect(up.statusCode).toBe(200)
      expect(certRep(t.app, up.rawPayload, req.signer).status).toBe('SUCCESS')
      expect((await t.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { id } })).usedAt).not.toBeNull()
    } finally {
      await t?.close()
      await drop()
    }
  })
})
