import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../../src/config/index.js'
import { certificateParts, extendedKeyUsages } from '../../../src/pki/certificate.js'
import { parseSignedData } from '../../../src/pki/cms.js'
import { der } from '../../../src/pki/der.js'
import { OID } from '../../../src/pki/oids.js'
import { buildCsr, nameDer, selfSignedCertificate } from '../../../src/pki/scep/client.js'
import { MessageType } from '../../../src/pki/scep/types.js'
import { certificateFingerprint, findDeviceCertificate } from '../../../src/services/device-certificates.js'
import { MAX_RENEWALS_PER_DAY } from '../../../src/services/scep.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { authenticateWith } from '../../helpers/device.js'
import { openssl } from '../../helpers/openssl.js'
import { certRep, createEnrollment, issuedCertificate, postPkiOperation, rsaKeys, SCEP_PATH, scepRequest, type Enrollment, type KeyPair } from '../../helpers/scep.js'

let t: TestApp
let enrollment: Enrollment
let deviceKeys: KeyPair

beforeAll(async () => {
  t = await buildTestApp()
  enrollment = await createEnrollment(t.app)
  deviceKeys = rsaKeys()
})
afterAll(async () => t.close())

const certificateCount = () => t.app.db.prisma.deviceCertificate.count()

describe('GetCACaps and GetCACert', () => {
  it('lists the capabilities one per line as text/plain', async () => {
    const res = await t.app.inject(`${SCEP_PATH}?operation=GetCACaps`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/plain/)
    const caps = res.body.trim().split('\n')
    expect(caps).toEqual(expect.arrayContaining(['POSTPKIOperation', 'SHA-256', 'AES', 'DES3', 'SCEPStandard', 'Renewal']))
    expect(caps).not.toContain('SHA-1')
  })

  it('returns the CA certificate as DER that openssl reads', async () => {
    const res = await t.app.inject(`${SCEP_PATH}?operation=GetCACert`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/x-x509-ca-cert')
    expect(res.rawPayload.equals(t.app.keys.scepCa.certificate.raw)).toBe(true)
    const o = openssl()
    try {
      o.file('ca.der', res.rawPayload)
      const text = o.run(['x509', '-inform', 'DER', '-in', 'ca.der', '-noout', '-subject', '-ext', 'basicConstraints,keyUsage']).toString()
      expect(text).toContain('CN = Example Corp Device CA')
      expect(text).toContain('CA:TRUE')
      expect(text).toContain('Key Encipherment')
    } finally {
      o.close()
    }
  })

  it('answers unknown, missing or repeated operations with 400', async () => {
    for (const url of [`${SCEP_PATH}?operation=GetNextCACert`, SCEP_PATH, `${SCEP_PATH}?operation=GetCACaps&operation=GetCACert`, `${SCEP_PATH}?operation=getcacaps`]) {
      const res = await t.app.inject(url)
      expect(res.statusCode, url).toBe(400)
      expect(res.headers['content-type']).toMatch(/^text\/plain/)
    }
    const post = await t.app.inject({ method: 'POST', url: `${SCEP_PATH}?operation=GetCACaps`, payload: Buffer.from('x') })
    expect(post.statusCode).toBe(400)
  })
})

describe('PKIOperation with a one-time challenge', () => {
  it('issues a certificate from the server template, stores it, and consumes the challenge', async () => {
    const { id: challengeId, challenge } = await enrollment.challenge()
    const subject = nameDer([['CN', 'admin, O=Apple Inc.'], ['O', 'Evil']])
    const req = scepRequest(t.app, { challenge, keys: deviceKeys, subject })
    const res = await postPkiOperation(t.app, req.der)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/x-pki-message')
    const reply = certRep(t.app, res.rawPayload, req.signer)
    expect(reply.status).toBe('SUCCESS')
    expect(reply.transactionId).toBe(req.transactionId)
    expect(reply.recipientNonce.equals(req.senderNonce)).toBe(true)
    expect(reply.senderNonce.equals(req.senderNonce)).toBe(false)
    const cert = issuedCertificate(reply)

    const row = await findDeviceCertificate(t.app.db.prisma, certificateFingerprint(cert.raw))
    expect(row).toMatchObject({
      userId: enrollment.userId,
      teamId: enrollment.teamId,
      accessTokenId: enrollment.accessTokenId,
      scepChallengeId: challengeId,
      renewedFromId: null,
      revokedAt: null,
      serial: cert.serialNumber.toLowerCase(),
    })
    expect(Buffer.from(row!.certificateDer).equals(cert.raw)).toBe(true)
    // The subject is the server's: the certificate's own id and ORG_NAME, nothing the CSR asked for.
    expect(cert.subject).toBe(`CN=${row!.id}\nO=Example Corp`)
    expect(row!.subject).toBe(`CN=${row!.id}, O=Example Corp`)
    expect(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(deviceKeys.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true)
    expect(cert.verify(t.app.keys.scepCa.certificate.publicKey)).toBe(true)
    const parts = certificateParts(cert.raw)
    expect(extendedKeyUsages(parts)).toEqual([OID.clientAuth])
    expect(parts.extensions.has('2.5.29.17')).toBe(false) // no SAN
    expect(cert.serialNumber).toMatch(/^[0-9A-F]{30,32}$/)
    const days = (new Date(cert.validTo).getTime() - Date.now()) / 86400_000
    expect(days).toBeGreaterThan(364.9)
    expect(days).toBeLessThanOrEqual(365)
    expect(row!.notAfter.getTime()).toBe(new Date(cert.validTo).getTime())

    const stored = await t.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { id: challengeId } })
    expect(stored.usedAt).not.toBeNull()
  })

  it('accepts the GET form with message= in either base64 alphabet, percent-encoded or not', async () => {
    for (const [encoding, escape] of [['base64', encodeURIComponent], ['base64url', encodeURIComponent], ['base64', (v: string) => v]] as const) {
      const { challenge } = await enrollment.challenge()
      const req = scepRequest(t.app, { challenge, keys: deviceKeys })
      const res = await t.app.inject(`${SCEP_PATH}?operation=PKIOperation&message=${escape(req.der.toString(encoding))}`)
      expect(res.statusCode).toBe(200)
      expect(certRep(t.app, res.rawPayload, req.signer).status).toBe('SUCCESS')
    }
  })

  it('accepts any content type, or none, on POST', async () => {
    for (const contentType of ['application/octet-stream', 'text/plain', '']) {
      const { challenge } = await enrollment.challenge()
      const req = scepRequest(t.app, { challenge, keys: deviceKeys })
      const res = await t.app.inject({ method: 'POST', url: `${SCEP_PATH}?operation=PKIOperation`, headers: contentType ? { 'content-type': contentType } : {}, payload: req.der })
      expect(res.statusCode, contentType).toBe(200)
      expect(certRep(t.app, res.rawPayload, req.signer).status).toBe('SUCCESS')
    }
  })

  it('answers in a cipher the requester can read: the same AES, or DES3 for DES', async () => {
    const { challenge } = await enrollment.challenge()
    const req = scepRequest(t.app, { challenge, keys: deviceKeys, cipher: 'des-cbc' })
    const res = await postPkiOperation(t.app, req.der)
    const o = openssl()
    try {
      // openssl shows the content cipher of the enveloped reply.
      const inner = innerEnvelope(res.rawPayload)
      o.file('env.der', inner)
      expect(o.run(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', 'env.der']).toString()).toContain('des-ede3-cbc')
    } finally {
      o.close()
    }
    expect(certRep(t.app, res.rawPayload, req.signer).status).toBe('SUCCESS')
  })

  it('issues for an EC P-256 key', async () => {
    const { challenge } = await enrollment.challenge()
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    // The message is signed with an RSA certificate the reply can be encrypted to.
    const req = scepRequest(t.app, { challenge, keys: ec, signer: { certificate: selfSignedCertificate(deviceKeys), privateKey: deviceKeys.privateKey } })
    const reply = certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, req.signer)
    expect(issuedCertificate(reply).publicKey.asymmetricKeyType).toBe('ec')
  })
})

describe('PKIOperation refusals: CertRep FAILURE badRequest, nothing issued', () => {
  async function expectFailure(req: ReturnType<typeof scepRequest>, failInfo = 'badRequest') {
    const before = await certificateCount()
    const res = await postPkiOperation(t.app, req.der)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/x-pki-message')
    const reply = certRep(t.app, res.rawPayload, req.signer)
    expect(reply).toMatchObject({ status: 'FAILURE', failInfo, certificates: [] })
    expect(reply.recipientNonce.equals(req.senderNonce)).toBe(true)
    expect(await certificateCount()).toBe(before)
    return reply
  }

  it('wrong, empty or missing challenge', async () => {
    await expectFailure(scepRequest(t.app, { challenge: 'not-a-challenge', keys: deviceKeys }))
    await expectFailure(scepRequest(t.app, { challenge: '', keys: deviceKeys }))
    await expectFailure(scepRequest(t.app, { keys: deviceKeys }))
    await expectFailure(scepRequest(t.app, { challenge: 'x'.repeat(5000), keys: deviceKeys }))
  })

  it('a challenge used once already', async () => {
    const { challenge } = await enrollment.challenge()
    const first = scepRequest(t.app, { challenge, keys: deviceKeys })
    expect(certRep(t.app, (await postPkiOperation(t.app, first.der)).rawPayload, first.signer).status).toBe('SUCCESS')
    await expectFailure(scepRequest(t.app, { challenge, keys: deviceKeys }))
  })

  it('an expired challenge, which stays unused', async () => {
    const { id, challenge } = await enrollment.challenge(-1000)
    await expectFailure(scepRequest(t.app, { challenge, keys: deviceKeys }))
    expect((await t.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { id } })).usedAt).toBeNull()
  })

  it('a challenge whose access token was revoked', async () => {
    const other = await createEnrollment(t.app)
    const { challenge } = await other.challenge()
    await t.app.db.prisma.accessToken.update({ where: { id: other.accessTokenId }, data: { revokedAt: new Date() } })
    await expectFailure(scepRequest(t.app, { challenge, keys: deviceKeys }))
  })

  it('RSA-1024 and P-384 keys, without burning the challenge', async () => {
    const { id, challenge } = await enrollment.challenge()
    await expectFailure(scepRequest(t.app, { challenge, keys: rsaKeys(1024) }))
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
    await expectFailure(scepRequest(t.app, { challenge, keys: p384, signer: { certificate: selfSignedCertificate(deviceKeys), privateKey: deviceKeys.privateKey } }))
    expect((await t.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { id } })).usedAt).toBeNull()
    // The device retries with a proper key and the same challenge.
    const ok = scepRequest(t.app, { challenge, keys: deviceKeys })
    expect(certRep(t.app, (await postPkiOperation(t.app, ok.der)).rawPayload, ok.signer).status).toBe('SUCCESS')
  })

  it('a CSR with a broken self-signature (badMessageCheck)', async () => {
    const { id, challenge } = await enrollment.challenge()
    const csr = buildCsr({ keys: deviceKeys, subject: nameDer([['CN', 'x']]), challengePassword: challenge })
    csr[csr.length - 3]! ^= 0x40
    await expectFailure(scepRequest(t.app, { keys: deviceKeys, csr }), 'badMessageCheck')
    expect((await t.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { id } })).usedAt).toBeNull()
  })

  it('a truncated or garbage envelope inside a valid signature (badMessageCheck)', async () => {
    const { challenge } = await enrollment.challenge()
    const csr = buildCsr({ keys: deviceKeys, subject: nameDer([['CN', 'x']]), challengePassword: challenge })
    await expectFailure(scepRequest(t.app, { keys: deviceKeys, csr: csr.subarray(0, csr.length - 40) }), 'badMessageCheck')
    await expectFailure(scepRequest(t.app, { keys: deviceKeys, csr: Buffer.from('garbage') }), 'badMessageCheck')
  })

  it('unsupported message types (GetCert, CertPoll)', async () => {
    await expectFailure(scepRequest(t.app, { keys: deviceKeys, messageType: MessageType.GetCert }))
    await expectFailure(scepRequest(t.app, { keys: deviceKeys, messageType: MessageType.CertPoll }))
  })

  it('a signer certificate with an EC key, which no RSA envelope can reach (badAlg)', async () => {
    const { id, challenge } = await enrollment.challenge()
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const req = scepRequest(t.app, { challenge, keys: ec })
    const res = await postPkiOperation(t.app, req.der)
    expect(res.statusCode).toBe(200)
    // The reply is signed by the CA and readable without decryption.
    const reply = certRep(t.app, res.rawPayload, req.signer)
    expect(reply).toMatchObject({ status: 'FAILURE', failInfo: 'badAlg' })
    expect((await t.app.db.prisma.scepChallenge.findUniqueOrThrow({ where: { id } })).usedAt).toBeNull()
  })
})

describe('five concurrent PKIOperations with one challenge', () => {
  it('issue exactly one certificate', async () => {
    const { id, challenge } = await enrollment.challenge()
    const requests = Array.from({ length: 5 }, () => scepRequest(t.app, { challenge, keys: deviceKeys }))
    const responses = await Promise.all(requests.map((r) => postPkiOperation(t.app, r.der)))
    const replies = responses.map((res, i) => certRep(t.app, res.rawPayload, requests[i]!.signer))
    expect(replies.filter((r) => r.status === 'SUCCESS')).toHaveLength(1)
    expect(replies.filter((r) => r.status === 'FAILURE' && r.failInfo === 'badRequest')).toHaveLength(4)
    expect(await t.app.db.prisma.deviceCertificate.count({ where: { scepChallengeId: id } })).toBe(1)
  })
})

describe('undecodable input: 400, nothing stored, no crash', () => {
  it.each([
    ['garbage', Buffer.from('this is not DER at all')],
    ['empty SEQUENCE', der.sequence()],
    ['huge OID arc', der.sequence(der.oid(`1.2.${'9'.repeat(60)}`), der.explicit(0, der.sequence()))],
    ['deep nesting', Array.from({ length: 200 }).reduce<Buffer>((acc) => der.sequence(acc), der.null())],
    ['length past the end', Buffer.from('3084ffffffff0000', 'hex')],
  ])('%s', async (_name, body) => {
    const before = await certificateCount()
    const res = await postPkiOperation(t.app, body)
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toMatch(/^text\/plain/)
    expect(await certificateCount()).toBe(before)
  })

  it('a truncated or tampered message', async () => {
    const { challenge } = await enrollment.challenge()
    const req = scepRequest(t.app, { challenge, keys: deviceKeys })
    expect((await postPkiOperation(t.app, req.der.subarray(0, req.der.length - 100))).statusCode).toBe(400)
    const tampered = Buffer.from(req.der)
    tampered[300]! ^= 0x01
    expect((await postPkiOperation(t.app, tampered)).statusCode).toBe(400)
    // The challenge survived both and still works.
    expect(certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, req.signer).status).toBe('SUCCESS')
  })

  it('an empty POST, a GET without message, a message that is not base64', async () => {
    expect((await postPkiOperation(t.app, Buffer.alloc(0))).statusCode).toBe(400)
    expect((await t.app.inject(`${SCEP_PATH}?operation=PKIOperation`)).statusCode).toBe(400)
    expect((await t.app.inject(`${SCEP_PATH}?operation=PKIOperation&message=%%%%`)).statusCode).toBe(400)
    expect((await t.app.inject(`${SCEP_PATH}?operation=PKIOperation&message=${encodeURIComponent('MIIB!!!')}`)).statusCode).toBe(400)
  })

  it('a body over 64 KiB is 413, a compressed one 415', async () => {
    expect((await postPkiOperation(t.app, Buffer.alloc(65 * 1024, 0x30))).statusCode).toBe(413)
    const gz = await t.app.inject({ method: 'POST', url: `${SCEP_PATH}?operation=PKIOperation`, headers: { 'content-encoding': 'gzip' }, payload: Buffer.from('x') })
    expect(gz.statusCode).toBe(415)
  })
})

describe('RenewalReq', () => {
  /** A certificate from the challenge; `authenticated`: bound to an enrollment by Authenticate, as a device does next. */
  async function enroll(options: { authenticated?: boolean } = { authenticated: true }) {
    const { challenge } = await enrollment.challenge()
    const req = scepRequest(t.app, { challenge, keys: deviceKeys })
    const cert = issuedCertificate(certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, req.signer))
    const identity = { certificate: cert, privateKey: deviceKeys.privateKey }
    if (options.authenticated) await authenticateWith(t.app, identity, { token: enrollment.token, tokenId: enrollment.accessTokenId, userId: enrollment.userId })
    return identity
  }
  const renewal = (signer: { certificate: X509Certificate; privateKey: typeof deviceKeys.privateKey }) => scepRequest(t.app, { keys: rsaKeys(), signer, messageType: MessageType.RenewalReq })

  it('signed by a certificate we issued: a new certificate for the same enrollment, no challenge', async () => {
    const current = await enroll()
    const newKeys = rsaKeys()
    const req = scepRequest(t.app, { keys: newKeys, signer: current, messageType: MessageType.RenewalReq })
    const reply = certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, current)
    const renewed = issuedCertificate(reply)
    expect(renewed.publicKey.export({ type: 'spki', format: 'der' }).equals(newKeys.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true)
    const prisma = t.app.db.prisma
    const old = await findDeviceCertificate(prisma, certificateFingerprint(current.certificate.raw))
    const row = await findDeviceCertificate(prisma, certificateFingerprint(renewed.raw))
    expect(row).toMatchObject({ renewedFromId: old!.id, scepChallengeId: null, userId: old!.userId, teamId: old!.teamId, accessTokenId: old!.accessTokenId, enrollmentProfileId: old!.enrollmentProfileId })
    expect(renewed.serialNumber).not.toBe(current.certificate.serialNumber)
  })

  it('refused when signed by a self-signed, revoked or expired certificate', async () => {
    const stranger = { certificate: selfSignedCertificate(deviceKeys), privateKey: deviceKeys.privateKey }
    const before = await certificateCount()
    const check = async (signer: Parameters<typeof renewal>[0]) => {
      const req = renewal(signer)
      expect(certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, signer)).toMatchObject({ status: 'FAILURE', failInfo: 'badRequest' })
    }
    await check(stranger)
    const revoked = await enroll()
    await t.app.db.prisma.deviceCertificate.update({ where: { fingerprintSha256: certificateFingerprint(revoked.certificate.raw) }, data: { revokedAt: new Date() } })
    await check(revoked)
    const expired = await enroll()
    await t.app.db.prisma.deviceCertificate.update({ where: { fingerprintSha256: certificateFingerprint(expired.certificate.raw) }, data: { notAfter: new Date(Date.now() - 1000) } })
    await check(expired)
    expect(await certificateCount()).toBe(before + 2) // the two enrollments, no renewal
  })

  it('refused for a certificate that never authenticated: one sign-in cannot become several enrollments (SECURITY.md row 26)', async () => {
    const a = await enroll({ authenticated: false })
    const before = await certificateCount()
    for (let i = 0; i < 2; i++) {
      expect(certRep(t.app, (await postPkiOperation(t.app, renewal(a).der)).rawPayload, a)).toMatchObject({ status: 'FAILURE', failInfo: 'badRequest' })
    }
    expect(await certificateCount()).toBe(before)
    const logged = t.logs().filter((l) => l.msg === 'SCEP request refused').map((l) => (l.scep as { reason: string }).reason)
    expect(logged).toContain('RenewalReq signed by a certificate that has not authenticated an enrollment')
  })

  it(`answers at most ${MAX_RENEWALS_PER_DAY} renewals per enrollment per day`, async () => {
    const a = await enroll()
    for (let i = 0; i < MAX_RENEWALS_PER_DAY; i++) {
      const req = renewal(a)
      expect(certRep(t.app, (await postPkiOperation(t.app, req.der)).rawPayload, a).status, `renewal ${i + 1}`).toBe('SUCCESS')
    }
    const before = await certificateCount()
    expect(certRep(t.app, (await postPkiOperation(t.app, renewal(a).der)).rawPayload, a)).toMatchObject({ status: 'FAILURE', failInfo: 'badRequest' })
    expect(await certificateCount()).toBe(before)
  })
})

describe('logs', () => {
  it('say what happened without the challenge or the message', async () => {
    const { challenge } = await enrollment.challenge()
    const req = scepRequest(t.app, { challenge, keys: deviceKeys })
    const b64 = req.der.toString('base64url')
    await t.app.inject(`${SCEP_PATH}?operation=PKIOperation&message=${b64}`)
    await postPkiOperation(t.app, scepRequest(t.app, { challenge, keys: deviceKeys }).der)
    const all = t.logLines.join('\n')
    expect(all).not.toContain(challenge)
    expect(all).not.toContain(b64.slice(0, 60))
    const outcomes = t.logs().filter((l) => (l.scep as { transactionId?: string } | undefined)?.transactionId !== undefined)
    expect(outcomes.some((l) => l.msg === 'SCEP certificate issued')).toBe(true)
    expect(outcomes.some((l) => l.msg === 'SCEP request refused' && (l.scep as { reason: string }).reason === 'challenge already used')).toBe(true)
  })
})

describe('SCEP_CERT_VALIDITY_DAYS', () => {
  it('sets the validity of issued certificates, and a bad value names the variable', async () => {
    const short = await buildTestApp({ env: { SCEP_CERT_VALIDITY_DAYS: '30' } })
    try {
      const e = await createEnrollment(short.app)
      const { challenge } = await e.challenge()
      const req = scepRequest(short.app, { challenge, keys: deviceKeys })
      const cert = issuedCertificate(certRep(short.app, (await postPkiOperation(short.app, req.der)).rawPayload, req.signer))
      const days = (new Date(cert.validTo).getTime() - Date.now()) / 86400_000
      expect(days).toBeGreaterThan(29.9)
      expect(days).toBeLessThanOrEqual(30)
    } finally {
      await short.close()
    }
    for (const bad of ['0', '3651', 'ten']) {
      expect(() => loadConfig({ DATA_DIR: '/tmp/unused', SCEP_CERT_VALIDITY_DAYS: bad })).toThrow(expect.objectContaining({ variable: 'SCEP_CERT_VALIDITY_DAYS' }))
    }
    expect(() => loadConfig({ DATA_DIR: '/tmp/unused', SCEP_CERT_VALIDITY_DAYS: 'ten' })).toThrow(ConfigError)
  })
})

/** The EnvelopedData inside a SUCCESS CertRep (its SignedData content). */
function innerEnvelope(certRepDer: Buffer): Buffer {
  return parseSignedData(certRepDer).content!
}
