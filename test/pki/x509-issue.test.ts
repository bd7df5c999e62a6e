import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { certificateParts, extendedKeyUsages } from '../../src/pki/certificate.js'
import { OID } from '../../src/pki/oids.js'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'
import { openssl, type OpensslRun } from '../helpers/openssl.js'

let ca: X509Certificate
let signer: CertificateSigner
let ossl: OpensslRun

beforeAll(async () => {
  const keys = await generateRsaKeyPair(2048)
  ca = await createSelfSigned({
    subject: [['CN', 'Issuer Test CA'], ['O', 'Example']],
    keys,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.UTC(2060, 0, 1)),
    ca: true,
    keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature', 'keyEncipherment'],
  })
  signer = await CertificateSigner.create({ certificate: ca, privateKey: keys.privateKey, chain: [] })
  ossl = openssl()
})
afterAll(() => ossl.close())

describe('CertificateSigner.issue', () => {
  it('issues a client certificate that openssl verifies against the CA, with the requested profile', async () => {
    const device = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const notBefore = new Date(Date.now() - 600_000)
    const cert = await signer.issue({
      subject: [['CN', 'device-1'], ['O', 'Example, Inc.']],
      publicKey: device.publicKey,
      notBefore,
      notAfter: new Date(Date.UTC(2055, 5, 1)), // GeneralizedTime territory
      serialHex: '1a2b3c',
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extendedKeyUsage: ['clientAuth'],
    })
    ossl.file('ca.pem', ca.toString())
    ossl.file('leaf.pem', cert.toString())
    expect(ossl.run(['verify', '-CAfile', 'ca.pem', '-purpose', 'sslclient', 'leaf.pem']).toString()).toContain('leaf.pem: OK')
    expect(cert.subject).toBe('CN=device-1\nO=Example\\, Inc.')
    expect(cert.serialNumber).toBe('1A2B3C')
    expect(new Date(cert.validTo).getTime()).toBe(Date.UTC(2055, 5, 1))
    expect(Math.floor(new Date(cert.validFrom).getTime() / 1000)).toBe(Math.floor(notBefore.getTime() / 1000))
    expect(cert.checkIssued(ca)).toBe(true)
    expect(cert.verify(ca.publicKey)).toBe(true)

    const parts = certificateParts(cert.raw)
    expect(extendedKeyUsages(parts)).toEqual([OID.clientAuth])
    expect(parts.extensions.get('2.5.29.19')).toEqual({ critical: true, value: Buffer.from('3000', 'hex') })
    // digitalSignature | keyEncipherment: 0xa0 with 5 unused bits.
    expect(parts.extensions.get('2.5.29.15')).toEqual({ critical: true, value: Buffer.from('030205a0', 'hex') })
    const text = ossl.run(['x509', '-in', 'leaf.pem', '-noout', '-ext', 'subjectKeyIdentifier,authorityKeyIdentifier']).toString()
    const caSki = ossl.run(['x509', '-in', 'ca.pem', '-noout', '-ext', 'subjectKeyIdentifier']).toString().split('\n')[1]!.trim()
    expect(text).toContain(`Authority Key Identifier: \n    ${caSki}`)
    // RFC 5280 4.2.1.2 method 1, as openssl computes it for a certificate of the same key.
    ossl.file('device.key', device.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    ossl.run(['req', '-new', '-x509', '-key', 'device.key', '-subj', '/CN=x', '-addext', 'subjectKeyIdentifier=hash', '-out', 'same-key.pem'])
    const expectedSki = ossl.run(['x509', '-in', 'same-key.pem', '-noout', '-ext', 'subjectKeyIdentifier']).toString().split('\n')[1]!.trim()
    expect(text).toContain(`Subject Key Identifier: \n    ${expectedSki}`)
  })

  it('certifies EC P-256 keys', async () => {
    const device = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const cert = await signer.issue({ subject: [['CN', 'ec']], publicKey: device.publicKey, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
    expect(cert.publicKey.asymmetricKeyType).toBe('ec')
    expect(cert.verify(ca.publicKey)).toBe(true)
  })

  it('draws a fresh positive 128-bit serial when none is given', async () => {
    const device = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const params = { subject: [['CN', 's']] as const, publicKey: device.publicKey, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature' as const] }
    const [a, b] = await Promise.all([signer.issue(params), signer.issue(params)])
    expect(a.serialNumber).not.toBe(b.serialNumber)
    expect(a.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/)
  })
})
