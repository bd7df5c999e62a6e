/**
 * The real peer: micromdm's scepclient (Go, Debian package `scep`, installed by .ci/run) against the
 * listening server. It signs with SHA-1, encrypts with DES-CBC, re-encodes signed attributes before
 * verifying, and shares no code with ours.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { certificateFingerprint, findDeviceCertificate } from '../../src/services/device-certificates.js'
import { authenticateWith } from '../helpers/device.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { createEnrollment, SCEP_PATH, type Enrollment } from '../helpers/scep.js'

const run = promisify(execFile)

let t: TestApp
let url: string
let enrollment: Enrollment
let workDir: string

beforeAll(async () => {
  t = await buildTestApp()
  const address = await t.app.listen({ port: 0, host: '127.0.0.1' })
  url = `${address}${SCEP_PATH}`
  enrollment = await createEnrollment(t.app)
  workDir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-scepclient-'))
  writeFileSync(path.join(workDir, 'ca.pem'), t.app.keys.scepCa.certificate.toString())
})
afterAll(async () => {
  await t.close()
  rmSync(workDir, { recursive: true, force: true })
})

let dirs = 0

/** Runs scepclient in `dir` (a fresh one by default); resolves with its exit code and output. */
async function scepclient(challenge: string, dir = mkdtempSync(path.join(workDir, `client-${dirs++}-`))) {
  const args = ['-server-url', url, '-private-key', path.join(dir, 'key.pem'), '-certificate', path.join(dir, 'cert.pem'), '-challenge', challenge, '-cn', 'requested-by-client', '-organization', 'Evil Corp']
  try {
    const { stdout, stderr } = await run('scepclient', args, { timeout: 20_000 })
    return { code: 0, output: stdout + stderr, dir }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}`, dir }
  }
}

const certificateCount = () => t.app.db.prisma.deviceCertificate.count()

describe('scepclient', () => {
  it('enrolls: the certificate verifies against the CA with openssl and carries the template subject', async () => {
    const { challenge } = await enrollment.challenge()
    const result = await scepclient(challenge)
    expect(result.output).toContain('pkiStatus=SUCCESS')
    expect(result.code).toBe(0)
    const certPath = path.join(result.dir, 'cert.pem')
    const verify = await run('openssl', ['verify', '-CAfile', path.join(workDir, 'ca.pem'), '-purpose', 'sslclient', certPath])
    expect(verify.stdout).toContain(`${certPath}: OK`)
    const cert = new X509Certificate(readFileSync(certPath))
    const row = await findDeviceCertificate(t.app.db.prisma, certificateFingerprint(cert.raw))
    expect(row).toMatchObject({ userId: enrollment.userId, accessTokenId: enrollment.accessTokenId, renewedFromId: null })
    expect(cert.subject).toBe(`CN=${row!.id}\nO=Example Corp`)
    expect(cert.subject).not.toContain('requested-by-client')
  })

  it('renews with the certificate it holds (RenewalReq, no challenge)', async () => {
    const { challenge } = await enrollment.challenge()
    const first = await scepclient(challenge)
    expect(first.code).toBe(0)
    const before = new X509Certificate(readFileSync(path.join(first.dir, 'cert.pem')))
    // A renewal continues an enrollment: the certificate authenticates first, as a device's does.
    const privateKey = createPrivateKey(readFileSync(path.join(first.dir, 'key.pem')))
    await authenticateWith(t.app, { certificate: before, privateKey }, { token: enrollment.token, tokenId: enrollment.accessTokenId, userId: enrollment.userId })
    // With a certificate on disk scepclient sends a RenewalReq signed by it; the challenge is spent.
    const second = await scepclient('', first.dir)
    expect(second.output).toContain('pkiStatus=SUCCESS')
    expect(second.code).toBe(0)
    const after = new X509Certificate(readFileSync(path.join(first.dir, 'cert.pem')))
    expect(after.fingerprint256).not.toBe(before.fingerprint256)
    const prisma = t.app.db.prisma
    const old = await findDeviceCertificate(prisma, certificateFingerprint(before.raw))
    expect(await findDeviceCertificate(prisma, certificateFingerprint(after.raw))).toMatchObject({ renewedFromId: old!.id, scepChallengeId: null })
  })

  it.each([
    ['a wrong challenge', async () => 'not-the-challenge'],
    ['a reused challenge', async () => {
      const { challenge } = await enrollment.challenge()
      expect((await scepclient(challenge)).code).toBe(0)
      return challenge
    }],
    ['an expired challenge', async () => (await enrollment.challenge(-60_000)).challenge],
  ])('is refused for %s: FAILURE badRequest, no certificate', async (_name, prepare) => {
    const challenge = await prepare()
    const before = await certificateCount()
    const result = await scepclient(challenge)
    expect(result.code).not.toBe(0)
    expect(result.output).toContain('failInfo: badRequest')
    expect(existsSync(path.join(result.dir, 'cert.pem'))).toBe(false)
    expect(await certificateCount()).toBe(before)
  })
})
