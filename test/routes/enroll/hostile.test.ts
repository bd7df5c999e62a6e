/**
 * The enroll endpoint under attack from outside (SECURITY.md row 24): a body signed by a self-made leaf
 * that carries dozens of certificates with RSA keys whose public exponent is ~3071 bits, named like the
 * leaf's issuer, so that a chain walk that verifies every name match spends ~20 ms on each. Refused in
 * about the time of a normal request, while the server keeps answering others.
 */
import { randomBytes, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { APPLE_IPHONE_CERTIFICATION_AUTHORITY_PEM, APPLE_IPHONE_DEVICE_CA_PEM, APPLE_ROOT_CA_PEM } from '../../../src/pki/apple-ca.js'
import { signCms } from '../../../src/pki/cms.js'
import { der } from '../../../src/pki/der.js'
import { nameDer } from '../../../src/pki/names.js'
import { OID } from '../../../src/pki/oids.js'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair } from '../../../src/pki/x509.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { enrollBody, postEnroll, writtenRows } from '../../helpers/enroll.js'

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(async () => t.close())

const DAY = 86400_000
/** Short, so that 57 decoys fit the 64 KB body limit as in the reported attack. */
const ISSUER = [['CN', 'Device CA']] as const

/** A positive INTEGER of exactly `bits` bits (top bit set), odd. */
function integerOfBits(bits: number): Buffer {
  const bytes = randomBytes(Math.ceil(bits / 8))
  const top = bits % 8 === 0 ? 8 : bits % 8
  bytes[0] = (bytes[0]! & ((1 << top) - 1)) | (1 << (top - 1))
  bytes[bytes.length - 1]! |= 1
  return der.integer(bytes.toString('hex'))
}

/**
 * A certificate named `subject` whose RSA key has a 3072-bit modulus and a 3071-bit public exponent (the
 * largest OpenSSL verifies with at that size). Its own signature is garbage: only its key matters.
 */
function decoy(subject: readonly (readonly ['CN' | 'OU' | 'O' | 'C', string])[]): Buffer {
  const rsaKey = der.sequence(integerOfBits(3072), integerOfBits(3071))
  const spki = der.sequence(der.sequence(der.oid(OID.rsaEncryption), der.null()), der.bitString(rsaKey))
  const alg = der.sequence(der.oid(OID.sha256WithRSAEncryption), der.null())
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(randomBytes(8).toString('hex').replace(/^[89a-f]/, '1')),
    alg,
    nameDer(subject),
    der.sequence(der.utcTime(new Date(Date.now() - DAY)), der.utcTime(new Date(Date.now() + DAY))),
    nameDer(subject),
    spki,
  )
  return der.sequence(tbs, alg, der.bitString(randomBytes(16)))
}

/** The attack body: a leaf "issued by" ISSUER, `decoys` decoys, and the genuine Apple CAs. */
async function attackBody(decoys: number): Promise<Buffer> {
  const keys = await generateRsaKeyPair()
  // The leaf's signature must be as long as the decoys' modulus, or OpenSSL refuses it before the costly
  // exponentiation.
  const caKeys = await generateRsaKeyPair(3072)
  const fakeCa = await createSelfSigned({ subject: ISSUER, keys: caKeys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), ca: true, keyUsage: ['keyCertSign'] })
  const leaf = await (await CertificateSigner.create({ certificate: fakeCa, privateKey: caKeys.privateKey })).issue({
    subject: [['CN', 'attacker']],
    publicKey: keys.publicKey,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + DAY),
    keyUsage: ['digitalSignature'],
  })
  const genuine = [APPLE_IPHONE_DEVICE_CA_PEM, APPLE_IPHONE_CERTIFICATION_AUTHORITY_PEM, APPLE_ROOT_CA_PEM].map((p) => new X509Certificate(p))
  const extra = [...Array.from({ length: decoys }, () => new X509Certificate(decoy(ISSUER))), ...genuine]
  const content = '<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>PRODUCT</key><string>iPhone12,1</string></dict></plist>'
  return signCms({ content: Buffer.from(content), certificate: leaf, privateKey: keys.privateKey, extraCertificates: extra, digest: 'sha1' })
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now()
  const value = await fn()
  return { ms: performance.now() - start, value }
}

/** Median time of a normal enroll request (the recorded iPhone body, answered 401). */
async function normalEnrollMs(): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < 7; i++) times.push((await timed(() => postEnroll(t.app, { body: enrollBody }))).ms)
  return times.sort((a, b) => a - b)[3]!
}

describe('a CMS full of decoy issuers with huge RSA exponents (SECURITY.md row 24)', () => {
  it.each([
    ['57 decoys and the genuine CAs (a 50 KB body, over the certificate bound)', 57, 400],
    ['4 decoys within the bound (each refused for its exponent)', 4, 403],
  ])('%s: refused within a few normal requests\' time, /healthz answered meanwhile, nothing written', async (_what, decoys, status) => {
    const body = await attackBody(decoys)
    const normal = await normalEnrollMs()
    const before = await writtenRows(t.app)
    const health = timed(() => t.app.inject('/healthz'))
    const attacks = await Promise.all(Array.from({ length: 3 }, () => timed(() => postEnroll(t.app, { body }))))
    const slowest = Math.max(...attacks.map((a) => a.ms))
    // Three at once against one normal request: the old walk took ~1.3 s each (about 400 normal requests,
    // ~4 s for the slowest of three). The 600 ms floor keeps a busy shared machine from failing the run.
    expect(slowest).toBeLessThan(Math.max(normal * 15, 600))
    const h = await health
    expect(h.value.statusCode).toBe(200)
    expect(h.ms).toBeLessThan(Math.max(normal * 15, 600))
    for (const a of attacks) expect(a.value.statusCode).toBe(status)
    expect(await writtenRows(t.app)).toEqual(before)
  })
})

describe('rate limits (ENROLL_RATE_LIMIT per minute per client address)', () => {
  it('answers 429 to the request past the limit on discovery and on enroll, each counted on its own', async () => {
    const limited = await buildTestApp({ env: { ENROLL_RATE_LIMIT: '3' } })
    try {
      const discover = () => limited.app.inject('/.well-known/com.apple.remotemanagement?user-identifier=alice%40example.com&model-family=iPhone')
      for (let i = 0; i < 3; i++) expect((await discover()).statusCode).toBe(200)
      const refused = await discover()
      expect(refused.statusCode).toBe(429)
      expect(refused.json()).toMatchObject({ error: 'too_many_requests' })
      for (let i = 0; i < 3; i++) expect((await postEnroll(limited.app)).statusCode).toBe(401)
      const before = await writtenRows(limited.app)
      expect((await postEnroll(limited.app)).statusCode).toBe(429)
      expect(await writtenRows(limited.app)).toEqual(before)
    } finally {
      await limited.close()
    }
  })
})
