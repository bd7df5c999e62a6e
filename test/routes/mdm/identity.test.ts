/**
 * SECURITY.md rows 7, 8 and 10 against PUT /mdm/apple/mdm: who signed the request. Every refusal is 400
 * or 403 (never 401, which could unenroll a device), logs its reason, and changes nothing.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair } from '../../../src/pki/x509.js'
import { certificateFingerprint, findDeviceCertificate } from '../../../src/services/device-certificates.js'
import { bytes } from '../../../src/storage/bytes.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { fixtureBase64 } from '../../helpers/fixtures.js'
import { activeDevice, checkinRows, COMMAND, enrollDevice, opensslSign, type Device } from '../../helpers/device.js'

const DAY = 86400_000
let t: TestApp
let a: Device
let b: Device

beforeAll(async () => {
  t = await buildTestApp()
  a = await activeDevice(t.app)
  b = await activeDevice(t.app)
})
afterAll(async () => t?.close())

/** The request gets `status`, its log line says why (`reason`), and no check-in row changed. */
async function refused(send: () => Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>, status: 400 | 403, reason: RegExp) {
  const before = await checkinRows(t.app)
  const lines = t.logLines.length
  const res = await send()
  expect(res.statusCode, res.body).toBe(status)
  expect(res.headers['www-authenticate']).toBeUndefined()
  // A code and a generic message: no row id or EnrollmentID goes back (SECURITY.md row 29); the log has them.
  expect(res.body).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i)
  expect(await checkinRows(t.app)).toEqual(before)
  const logged = t.logLines.slice(lines).map((l) => JSON.parse(l) as { reason?: { message?: string } })
  expect(logged.map((l) => l.reason?.message ?? '').join('\n')).toMatch(reason)
}

/** A certificate from our own CA that the SCEP endpoint never issued (so it is not in device_certificates). */
async function fromOurCa(options: { notBefore?: Date; notAfter?: Date; eku?: ('clientAuth' | 'emailProtection')[] } = {}) {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await (await CertificateSigner.create(t.app.keys.scepCa)).issue({
    subject: [['CN', 'not-from-scep']],
    publicKey: keys.publicKey,
    notBefore: options.notBefore ?? new Date(Date.now() - DAY),
    notAfter: options.notAfter ?? new Date(Date.now() + DAY),
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extendedKeyUsage: options.eku ?? ['clientAuth'],
  })
  return { certificate, privateKey: keys.privateKey }
}

describe('row 7: Mdm-Signature', () => {
  it('missing, not Base64, Base64 garbage and deep BER are 400', async () => {
    const body = a.body('idle')
    await refused(() => a.put(body, { contentType: COMMAND, signature: null }), 400, /Mdm-Signature header is missing/)
    await refused(() => a.put(body, { contentType: COMMAND, signature: '***' }), 400, /not valid Base64/)
    await refused(() => a.put(body, { contentType: COMMAND, signature: Buffer.from('certainly not a CMS').toString('base64') }), 400, /not a CMS SignedData/)
    const deep = Buffer.concat(Array.from({ length: 3000 }, () => Buffer.from([0x30, 0x80]))).toString('base64')
    await refused(() => a.put(body, { contentType: COMMAND, signature: deep }), 400, /not a CMS SignedData|too large/)
  })

  it('a real device\'s signature (nanomdm\'s recorded Idle) verifies but its certificate is not from this CA: 403', async () => {
    const body = fixtureBase64('mdm-signature.idle.body.b64')
    const signature = fixtureBase64('mdm-signature.idle.header.b64').toString('base64')
    await refused(() => a.put(body, { contentType: COMMAND, signature }), 403, /not issued by this server's CA/)
  })

  it('a signature over a body with one byte changed is 403', async () => {
    const body = a.body('idle')
    const signature = a.sign(body)
    const changed = Buffer.from(body)
    const at = changed.indexOf('Idle')
    changed[at] = 'J'.charCodeAt(0)
    await refused(() => a.put(changed, { contentType: COMMAND, signature }), 403, /does not verify: messageDigest does not match/)
  })

  it('two SignerInfos are 403, even when both are enrolled devices', async () => {
    const body = a.body('idle')
    const two = opensslSign(body, [
      { certificate: a.certificate, privateKey: a.keys.privateKey },
      { certificate: b.certificate, privateKey: b.keys.privateKey },
    ]).toString('base64')
    await refused(() => a.put(body, { contentType: COMMAND, signature: two }), 403, /exactly one signer, found 2/)
  })

  it('self-signed and foreign-CA signers are 403', async () => {
    const keys = await generateRsaKeyPair(2048)
    const selfSigned = await createSelfSigned({ subject: [['CN', 'device']], keys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), keyUsage: ['digitalSignature'], extendedKeyUsage: ['clientAuth'] })
    await refused(() => a.idle({ signer: { certificate: selfSigned, privateKey: keys.privateKey } }), 403, /not issued by this server's CA/)

    const caKeys = await generateRsaKeyPair(2048)
    // The same name as this server's CA, another key.
    const foreignCa = await createSelfSigned({ subject: [['CN', `${t.config.orgName} Device CA`], ['O', t.config.orgName]], keys: caKeys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), ca: true, keyUsage: ['keyCertSign'] })
    const foreignKeys = await generateRsaKeyPair(2048)
    const foreign = await (await CertificateSigner.create({ certificate: foreignCa, privateKey: caKeys.privateKey })).issue({
      subject: [['CN', 'device']],
      publicKey: foreignKeys.publicKey,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + DAY),
      keyUsage: ['digitalSignature'],
      extendedKeyUsage: ['clientAuth'],
    })
    await refused(() => a.idle({ signer: { certificate: foreign, privateKey: foreignKeys.privateKey } }), 403, /not issued by this server's CA/)
  })

  it('an expired identity certificate of this CA is 403, even one stored for the enrollment', async () => {
    const stored = (await findDeviceCertificate(t.app.db.prisma, certificateFingerprint(a.certificate.raw)))!
    const expired = await (await CertificateSigner.create(t.app.keys.scepCa)).issue({
      subject: [['CN', stored.id]],
      publicKey: a.keys.publicKey,
      notBefore: new Date(Date.now() - 400 * DAY),
      notAfter: new Date(Date.now() - DAY),
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extendedKeyUsage: ['clientAuth'],
    })
    const { id: _id, serial: _serial, fingerprintSha256: _f, certificateDer: _d, scepChallengeId: _c, ...same } = stored
    await t.app.db.prisma.deviceCertificate.create({
      data: { ...same, id: randomUUID(), serial: expired.serialNumber.toLowerCase().replace(/^0+/, ''), fingerprintSha256: certificateFingerprint(expired.raw), certificateDer: bytes(expired.raw), notBefore: new Date(expired.validFrom), notAfter: new Date(expired.validTo), renewedFromId: stored.id },
    })
    await refused(() => a.idle({ signer: { certificate: expired, privateKey: a.keys.privateKey } }), 403, /not within its validity period/)
  })

  it('a certificate of this CA that SCEP never issued, one without clientAuth, and a revoked one are 403', async () => {
    const unknown = await fromOurCa()
    await refused(() => a.idle({ signer: unknown }), 403, /not one this server issued/)
    const email = await fromOurCa({ eku: ['emailProtection'] })
    await refused(() => a.idle({ signer: email }), 403, /not for client authentication/)

    const device = await activeDevice(t.app)
    // The same bytes that were accepted a moment ago (a verified signature is remembered; revocation is
    // read from the database on every request).
    const idle = device.body('idle')
    const header = device.sign(idle)
    expect((await device.put(idle, { contentType: COMMAND, signature: header })).statusCode).toBe(200)
    await t.app.db.prisma.deviceCertificate.update({ where: { fingerprintSha256: certificateFingerprint(device.certificate.raw) }, data: { revokedAt: new Date() } })
    await refused(() => device.put(idle, { contentType: COMMAND, signature: header }), 403, /the signing certificate is revoked/)
    await refused(() => device.idle(), 403, /the signing certificate is revoked/)
    await refused(() => device.checkOut(), 403, /the signing certificate is revoked/)
  })
})

describe('row 8: device B claiming device A\'s EnrollmentID', () => {
  it('is refused on every message, and neither A nor B changes', async () => {
    const claim = (kind: 'authenticate' | 'token-update' | 'idle') => {
      const body = b.body(kind, { EnrollmentID: a.enrollmentId })
      return b.put(body, kind === 'idle' ? { contentType: COMMAND } : {})
    }
    await refused(() => claim('authenticate'), 403, /already authenticated enrollment .* with another EnrollmentID/)
    await refused(() => claim('token-update'), 403, /not to the EnrollmentID in the message/)
    await refused(() => claim('idle'), 403, /not to the EnrollmentID in the message/)
    await refused(() => b.put(b.message({ MessageType: 'CheckOut', Topic: b.topic, EnrollmentID: a.enrollmentId })), 403, /not to the EnrollmentID in the message/)
    expect((await a.idle()).statusCode).toBe(200)
    expect((await b.idle()).statusCode).toBe(200)
  })

  it('a device that never authenticated cannot take a live EnrollmentID with Authenticate', async () => {
    const c = await enrollDevice(t.app)
    c.enrollmentId = a.enrollmentId
    await refused(() => c.authenticate(), 403, /EnrollmentID belongs to enrollment .* of another certificate/)
    expect((await a.idle()).statusCode).toBe(200)
  })
})

describe('row 10: one identity certificate, a second EnrollmentID', () => {
  it('is refused after the first Authenticate', async () => {
    const device = await enrollDevice(t.app)
    expect((await device.authenticate()).statusCode).toBe(200)
    const first = device.enrollmentId
    device.enrollmentId = randomUUID().toUpperCase()
    await refused(() => device.authenticate(), 403, /already authenticated enrollment .* with another EnrollmentID/)
    device.enrollmentId = first
    expect((await device.tokenUpdate()).statusCode).toBe(200)
  })

  it('binds exactly one of two concurrent Authenticates with different EnrollmentIDs', async () => {
    const device = await enrollDevice(t.app)
    const ids = [randomUUID().toUpperCase(), randomUUID().toUpperCase()]
    const results = await Promise.all(
      ids.map((id) => {
        device.enrollmentId = id
        return device.put(device.body('authenticate'))
      }),
    )
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 403])
    const stored = (await findDeviceCertificate(t.app.db.prisma, certificateFingerprint(device.certificate.raw)))!
    const bindings = await t.app.db.prisma.mdmEnrollmentCertificate.findMany({ where: { deviceCertificateId: stored.id } })
    expect(bindings).toHaveLength(1)
    expect(await t.app.db.prisma.mdmEnrollment.count({ where: { enrollmentId: { in: ids } } })).toBe(1)
  })
})

describe('MDM_CLIENT_CERT_HEADER off (the default)', () => {
  it('ignores a client certificate header: without Mdm-Signature the request is 400', async () => {
    await refused(() => a.idle({ signature: null, headers: { 'x-client-cert': encodeURIComponent(a.certificate.toString()) } }), 400, /Mdm-Signature header is missing/)
  })
})

describe('MDM_CLIENT_CERT_HEADER behind a TLS-terminating proxy', () => {
  let proxied: TestApp
  beforeAll(async () => {
    proxied = await buildTestApp({ env: { MDM_CLIENT_CERT_HEADER: 'X-Client-Cert' }, database: t.database })
  })
  afterAll(async () => proxied?.app.close())

  const put = (device: Device, headers: Record<string, string>, signature?: string | null) =>
    proxied.app.inject({ method: 'PUT', url: '/mdm/apple/mdm', headers: { 'content-type': COMMAND, authorization: `Bearer ${device.token}`, ...headers, ...(signature ? { 'mdm-signature': signature } : {}) }, payload: device.body('idle') })

  it('takes the device identity from the forwarded certificate (nginx $ssl_client_escaped_cert)', async () => {
    const res = await put(a, { 'x-client-cert': encodeURIComponent(a.certificate.toString()) })
    expect(res.statusCode, res.body).toBe(200)
  })

  it('refuses a Mdm-Signature by another certificate than the forwarded one, and a forwarded certificate of another CA', async () => {
    const res = await put(a, { 'x-client-cert': encodeURIComponent(a.certificate.toString()) }, b.sign(a.body('idle')))
    expect(res.statusCode).toBe(403)
    const keys = await generateRsaKeyPair(2048)
    const selfSigned = await createSelfSigned({ subject: [['CN', 'device']], keys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), keyUsage: ['digitalSignature'], extendedKeyUsage: ['clientAuth'] })
    expect((await put(a, { 'x-client-cert': encodeURIComponent(selfSigned.toString()) })).statusCode).toBe(403)
  })

  it('falls back to Mdm-Signature when the proxy sends an empty header (no client certificate)', async () => {
    expect((await put(a, { 'x-client-cert': '' }, a.sign(a.body('idle')))).statusCode).toBe(200)
    expect((await put(a, { 'x-client-cert': '' })).statusCode).toBe(400)
  })
})
