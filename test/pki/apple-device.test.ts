import { X509Certificate } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { APPLE_ROOT_CA_PEM } from '../../src/pki/apple-ca.js'
import { APPLE_DEVICE_ANCHORS, chainToAnchor, verifyDeviceSignature, type TrustAnchor } from '../../src/pki/apple-device.js'
import { CmsError, parseSignedData, signCms } from '../../src/pki/cms.js'
import { der, isContext, parseDer, toDefiniteLength } from '../../src/pki/der.js'
import type { DistinguishedName } from '../../src/pki/names.js'
import { OID } from '../../src/pki/oids.js'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair, type KeyPair } from '../../src/pki/x509.js'
import { enrollBody } from '../helpers/enroll.js'

const recorded = parseSignedData(enrollBody)
const [deviceCert, deviceCa, iphoneCa] = recorded.certificates as [X509Certificate, X509Certificate, X509Certificate]

/** The recorded body with its certificate set replaced (certificates are outside the signature). */
function withCertificates(certs: X509Certificate[]): Buffer {
  const signedData = parseDer(enrollBody).children[1]!.children[0]!
  const fields = signedData.children.map((f) => (isContext(f, 0) ? der.implicit(0, true, Buffer.concat(certs.map((c) => c.raw))) : toDefiniteLength(f)))
  return der.sequence(der.oid(OID.signedData), der.explicit(0, der.sequence(...fields)))
}

const day = 86400_000
async function ca(subject: DistinguishedName, keys: KeyPair, issuer?: { certificate: X509Certificate; privateKey: KeyPair['privateKey'] }) {
  const validity = { notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + day) }
  if (!issuer) return createSelfSigned({ subject, keys, ...validity, ca: true, keyUsage: ['keyCertSign', 'digitalSignature'] })
  return (await CertificateSigner.create(issuer)).issue({ subject, publicKey: keys.publicKey, ...validity, ca: true, keyUsage: ['keyCertSign', 'digitalSignature'] })
}
async function leaf(subject: DistinguishedName, keys: KeyPair, issuer: { certificate: X509Certificate; privateKey: KeyPair['privateKey'] }) {
  const validity = { notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + day) }
  return (await CertificateSigner.create(issuer)).issue({ subject, publicKey: keys.publicKey, ...validity, keyUsage: ['digitalSignature'] })
}

describe('the pinned Apple certificates', () => {
  it('are the published Apple Root CA and the CAs a real iPhone chained to', () => {
    expect(new X509Certificate(APPLE_ROOT_CA_PEM).fingerprint256).toBe(
      'B0:B1:73:0E:CB:C7:FF:45:05:14:2C:49:F1:29:5E:6E:DA:6B:CA:ED:7E:2C:68:C5:BE:91:B5:A1:10:01:F0:24',
    )
    const pinned = Object.fromEntries(APPLE_DEVICE_ANCHORS.map((a) => [a.name, a.certificate.fingerprint256]))
    expect(pinned['Apple iPhone Device CA']).toBe(deviceCa.fingerprint256)
    expect(pinned['Apple iPhone Certification Authority']).toBe(iphoneCa.fingerprint256)
  })

  it('Apple Root CA really signed the recorded Apple iPhone Certification Authority (SHA-1, expired)', () => {
    const rootOnly = APPLE_DEVICE_ANCHORS.filter((a) => a.name === 'Apple Root CA')
    expect(new Date(iphoneCa.validTo).getTime()).toBeLessThan(Date.now())
    const trust = chainToAnchor(iphoneCa, [], rootOnly)
    expect(trust.anchor).toBe('Apple Root CA')
    expect(trust.untrustedReason).toBeUndefined()
  })
})

describe('verifyDeviceSignature', () => {
  it('accepts the recorded iPhone body: BER, SHA-1, expired CAs', () => {
    const result = verifyDeviceSignature(enrollBody)
    expect(result.untrustedReason).toBeUndefined()
    expect(result.anchor).toBe('Apple iPhone Device CA')
    expect(result.signer.fingerprint256).toBe(deviceCert.fingerprint256)
    expect(result.content.toString('utf8')).toContain('<key>PRODUCT</key>')
  })

  it('accepts the chain as macOS sends it (no Certification Authority) and a lone device certificate', () => {
    expect(verifyDeviceSignature(withCertificates([deviceCert, deviceCa])).untrustedReason).toBeUndefined()
    expect(verifyDeviceSignature(withCertificates([deviceCert])).anchor).toBe('Apple iPhone Device CA')
    // Order and extra certificates do not matter.
    expect(verifyDeviceSignature(withCertificates([iphoneCa, deviceCa, deviceCert])).untrustedReason).toBeUndefined()
  })

  it('throws CmsError when the signer certificate is missing or the content was changed', () => {
    expect(() => verifyDeviceSignature(withCertificates([deviceCa, iphoneCa]))).toThrow(/signer certificate is not included/)
    const altered = Buffer.from(enrollBody)
    altered.write('ja-XX', altered.indexOf('ja-JP'))
    expect(() => verifyDeviceSignature(altered)).toThrow(CmsError)
  })

  it('reports a self-signed signer, SHA-256 included, as untrusted', async () => {
    const keys = await generateRsaKeyPair()
    const certificate = await createSelfSigned({ subject: [['CN', 'Not a device']], keys, notBefore: new Date(), notAfter: new Date(Date.now() + day), keyUsage: ['digitalSignature'] })
    const body = signCms({ content: Buffer.from(recorded.content!), certificate, privateKey: keys.privateKey, digest: 'sha256' })
    const result = verifyDeviceSignature(body)
    expect(result.anchor).toBeUndefined()
    expect(result.untrustedReason).toMatch(/chain ends at "Not a device"/)
    expect(result.content.equals(recorded.content!)).toBe(true)
  })

  it('is not fooled by certificates that only carry Apple names', async () => {
    const caKeys = await generateRsaKeyPair()
    const fakeCa = await ca([['CN', 'Apple iPhone Device CA'], ['OU', 'Apple iPhone'], ['O', 'Apple Inc.'], ['C', 'US']], caKeys)
    const keys = await generateRsaKeyPair()
    const device = await leaf([['CN', '41B39CB1-EA4D-4F68-8FA6-F686B6FAB424']], keys, { certificate: fakeCa, privateKey: caKeys.privateKey })
    const body = signCms({ content: Buffer.from(recorded.content!), certificate: device, privateKey: keys.privateKey, extraCertificates: [fakeCa, iphoneCa], digest: 'sha1' })
    expect(verifyDeviceSignature(body).untrustedReason).toMatch(/chain ends at "Apple iPhone Device CA"/)
  })

  it('turns a malformed signed attribute into a CmsError (it escaped as an Asn1Error, a 500 at the endpoint)', () => {
    const attrs = parseDer(recorded.signers[0]!.signedAttributesDer!)
    const contentType = attrs.children.find((a) => a.children[0] && toDefiniteLength(a.children[0]).equals(der.oid(OID.contentType)))!
    const valueDer = toDefiniteLength(contentType.children[1]!.children[0]!)
    const at = enrollBody.indexOf(valueDer, enrollBody.indexOf(der.oid(OID.contentType), recorded.content!.length))
    expect(at).toBeGreaterThan(0)
    const broken = Buffer.from(enrollBody)
    broken[at + 2] = 0x80 // first arc byte: a leading zero, refused by the OID reader
    expect(() => verifyDeviceSignature(broken)).toThrow(/malformed contentType attribute/)
  })

  it('never throws anything but CmsError on mutated bodies', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(enrollBody.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
        const mutated = Buffer.from(enrollBody)
        for (const [at, value] of edits) mutated[at] = value
        try {
          verifyDeviceSignature(mutated)
        } catch (err) {
          expect(err).toBeInstanceOf(CmsError)
        }
      }),
      { numRuns: 300 },
    )
  })
})

describe('chainToAnchor policy', () => {
  it('trusts what a root-type anchor signed only under the device CA name (developer CAs share the root)', async () => {
    const rootKeys = await generateRsaKeyPair()
    const root = await ca([['CN', 'Test Root']], rootKeys)
    const anchors: TrustAnchor[] = [{ name: 'Test Root', certificate: root, pinned: false, issues: /^Apple iPhone Certification Authority$/ }]
    const issuer = { certificate: root, privateKey: rootKeys.privateKey }

    const deviceCaKeys = await generateRsaKeyPair()
    const goodCa = await ca([['CN', 'Apple iPhone Certification Authority']], deviceCaKeys, issuer)
    const devKeys = await generateRsaKeyPair()
    const developerCa = await ca([['CN', 'Apple Worldwide Developer Relations Certification Authority']], devKeys, issuer)
    const leafKeys = await generateRsaKeyPair()
    const device = await leaf([['CN', 'device']], leafKeys, { certificate: goodCa, privateKey: deviceCaKeys.privateKey })
    const developer = await leaf([['CN', 'Apple Development: Mallory']], leafKeys, { certificate: developerCa, privateKey: devKeys.privateKey })

    expect(chainToAnchor(device, [developerCa, goodCa], anchors)).toMatchObject({ anchor: 'Test Root', chain: [device, goodCa] })
    const refused = chainToAnchor(developer, [developerCa, goodCa, root], anchors)
    expect(refused.anchor).toBeUndefined()
    expect(refused.untrustedReason).toMatch(/signed by Test Root but is not an Apple device CA/)
  })
})
