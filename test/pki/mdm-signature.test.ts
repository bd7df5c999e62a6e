import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { parseSignedData, signCms } from '../../src/pki/cms.js'
import { certificateFingerprint } from '../../src/pki/certificate.js'
import { certificateFromProxyHeader, checkIssuedByCa, DeviceIdentityError, verifyMdmSignature } from '../../src/pki/mdm-signature.js'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair, type Identity, type KeyPair } from '../../src/pki/x509.js'
import { fixtureBase64, fixtureBytes } from '../helpers/fixtures.js'

const DAY = 86400_000
let ca: Identity
let otherCa: Identity
let device: { certificate: Identity['certificate']; privateKey: KeyPair['privateKey'] }

async function makeCa(name: string): Promise<Identity> {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({ subject: [['CN', name]], keys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 365 * DAY), ca: true, keyUsage: ['keyCertSign', 'digitalSignature'] })
  return { certificate, privateKey: keys.privateKey, chain: [] }
}

async function issue(by: Identity, opts: { notBefore?: Date; notAfter?: Date; eku?: ('clientAuth' | 'emailProtection')[] } = {}) {
  const keys = await generateRsaKeyPair(2048)
  const signer = await CertificateSigner.create(by)
  const certificate = await signer.issue({
    subject: [['CN', 'device']],
    publicKey: keys.publicKey,
    notBefore: opts.notBefore ?? new Date(Date.now() - DAY),
    notAfter: opts.notAfter ?? new Date(Date.now() + 30 * DAY),
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extendedKeyUsage: opts.eku ?? ['clientAuth'],
  })
  return { certificate, privateKey: keys.privateKey }
}

const body = fixtureBytes('command.idle.ios18.plist')
const sign = (who: typeof device, content: Uint8Array = body) => signCms({ content, ...who, detached: true, digest: 'sha1' }).toString('base64')

beforeAll(async () => {
  ca = await makeCa('Test Device CA')
  otherCa = await makeCa('Someone Else CA')
  device = await issue(ca)
})

describe('verifyMdmSignature', () => {
  it('accepts the recorded device signature (its chain is unknown to us)', () => {
    const cert = verifyMdmSignature(fixtureBase64('mdm-signature.idle.header.b64').toString('base64'), fixtureBase64('mdm-signature.idle.body.b64'))
    expect(() => checkIssuedByCa(cert, ca.certificate)).toThrow(/not issued by this server's CA/)
  })

  it('accepts our device identity signing the exact body, and openssl-made signatures too', () => {
    const cert = verifyMdmSignature(sign(device), body)
    expect(certificateFingerprint(cert.raw)).toBe(certificateFingerprint(device.certificate.raw))
    checkIssuedByCa(cert, ca.certificate)

    const dir = mkdtempSync(path.join(tmpdir(), 'mdmsig-'))
    writeFileSync(path.join(dir, 'cert.pem'), device.certificate.toString())
    writeFileSync(path.join(dir, 'key.pem'), device.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    writeFileSync(path.join(dir, 'body'), body)
    const sig = execFileSync('openssl', ['cms', '-sign', '-binary', '-outform', 'DER', '-md', 'sha256', '-in', path.join(dir, 'body'), '-signer', path.join(dir, 'cert.pem'), '-inkey', path.join(dir, 'key.pem')])
    expect(certificateFingerprint(verifyMdmSignature(sig.toString('base64'), body).raw)).toBe(certificateFingerprint(device.certificate.raw))
  })

  it('devices sign deterministically: the recorded Idle has no signed attributes (no signing time) and RSA PKCS #1 v1.5 over SHA-1', () => {
    // The premise of the verified-signature cache: a device's repeated Idle carries the same header.
    const signed = parseSignedData(fixtureBase64('mdm-signature.idle.header.b64'))
    expect(signed.signers).toHaveLength(1)
    expect(signed.signers[0]!.signedAttributesDer).toBeUndefined()
    expect(signed.signers[0]!.digest).toBe('sha1')
    expect(sign(device)).toBe(sign(device))
  })

  it('accepts the same header over the same body again, never over another body (403)', () => {
    const header = sign(device)
    const first = verifyMdmSignature(header, body)
    expect(verifyMdmSignature(header, Buffer.from(body))).toBe(first)
    const changed = Buffer.from(body)
    changed[changed.length - 30] = changed[changed.length - 30]! ^ 0x20
    expect(() => verifyMdmSignature(header, changed)).toThrow(DeviceIdentityError)
    // The same bytes split differently between header and body are another input.
    expect(() => verifyMdmSignature(header.slice(0, -4), Buffer.concat([Buffer.from(header.slice(-4)), body]))).toThrow()
    // A failure is not remembered as anything: the right pair still verifies after it.
    expect(verifyMdmSignature(header, body)).toBe(first)
  })

  it('reads the header however its Base64 is laid out, and refuses what is not Base64', () => {
    const header = sign(device)
    const expected = certificateFingerprint(device.certificate.raw)
    const fingerprint = (value: string) => certificateFingerprint(verifyMdmSignature(value, body, { once: true }).raw)
    // Wrapped in lines and without its padding: the strict reading after the fast one.
    expect(fingerprint(header.replace(/.{64}/g, '$&\n'))).toBe(expected)
    expect(fingerprint(header.replace(/=+$/, ''))).toBe(expected)
    // Node's decoder would skip these characters or read the URL-safe alphabet; the header is refused.
    const at = header.length >> 1
    for (const bad of [`${header.slice(0, at)}*${header.slice(at)}`, `${header.slice(0, at)}-_${header.slice(at + 2)}`, `${header.slice(0, at)}=${header.slice(at)}`]) {
      expect(() => verifyMdmSignature(bad, body, { once: true })).toThrow(/not valid Base64/)
    }
  })

  it('checks a body sent once (a command result) as it checks any other', () => {
    const header = sign(device)
    expect(certificateFingerprint(verifyMdmSignature(header, body, { once: true }).raw)).toBe(certificateFingerprint(device.certificate.raw))
    expect(verifyMdmSignature(header, body, { once: true })).toBe(verifyMdmSignature(header, body))
    const changed = Buffer.from(body)
    changed[changed.length - 30] = changed[changed.length - 30]! ^ 0x20
    expect(() => verifyMdmSignature(header, changed, { once: true })).toThrow(DeviceIdentityError)
  })

  it('refuses a body with one byte changed (403)', () => {
    const changed = Buffer.from(body)
    changed[changed.length - 30] = changed[changed.length - 30]! ^ 0x20
    expect(() => verifyMdmSignature(sign(device), changed)).toThrow(DeviceIdentityError)
  })

  it('refuses missing, non-Base64, garbage and deep-BER headers with 400', () => {
    const status = (fn: () => unknown) => {
      try {
        fn()
      } catch (err) {
        return (err as { status?: number }).status
      }
      return 200
    }
    expect(status(() => verifyMdmSignature(undefined, body))).toBe(400)
    expect(status(() => verifyMdmSignature('***not base64***', body))).toBe(400)
    expect(status(() => verifyMdmSignature(Buffer.from('garbage bytes here').toString('base64'), body))).toBe(400)
    const deep = Buffer.concat([...Array(3000)].map(() => Buffer.from([0x30, 0x80]))).toString('base64')
    expect(status(() => verifyMdmSignature(deep, body))).toBe(400)
    expect(status(() => verifyMdmSignature(Buffer.alloc(20_000, 0x30).toString('base64'), body))).toBe(400)
  })

  it('refuses two SignerInfos (403)', async () => {
    const second = await issue(ca)
    const dir = mkdtempSync(path.join(tmpdir(), 'mdmsig-'))
    for (const [n, who] of [['a', device], ['b', second]] as const) {
      writeFileSync(path.join(dir, `${n}.pem`), who.certificate.toString())
      writeFileSync(path.join(dir, `${n}.key`), who.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    }
    writeFileSync(path.join(dir, 'body'), body)
    const sig = execFileSync('openssl', ['cms', '-sign', '-binary', '-outform', 'DER', '-in', path.join(dir, 'body'), '-signer', path.join(dir, 'a.pem'), '-inkey', path.join(dir, 'a.key'), '-signer', path.join(dir, 'b.pem'), '-inkey', path.join(dir, 'b.key')])
    expect(() => verifyMdmSignature(sig.toString('base64'), body)).toThrow(/exactly one signer/)
  })
})

describe('checkIssuedByCa', () => {
  it('refuses self-signed, foreign-CA, expired, not-yet-valid and non-clientAuth certificates', async () => {
    const selfKeys = await generateRsaKeyPair(2048)
    const selfSigned = await createSelfSigned({ subject: [['CN', 'device']], keys: selfKeys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), keyUsage: ['digitalSignature'] })
    expect(() => checkIssuedByCa(selfSigned, ca.certificate)).toThrow(/not issued by this server's CA/)
    const foreign = (await issue(otherCa)).certificate
    const expired = (await issue(ca, { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) })).certificate
    const future = (await issue(ca, { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 2 * DAY) })).certificate
    const emailOnly = (await issue(ca, { eku: ['emailProtection'] })).certificate
    expect(() => checkIssuedByCa(foreign, ca.certificate)).toThrow(/not issued by this server's CA/)
    expect(() => checkIssuedByCa(expired, ca.certificate)).toThrow(/validity/)
    expect(() => checkIssuedByCa(future, ca.certificate)).toThrow(/validity/)
    expect(() => checkIssuedByCa(emailOnly, ca.certificate)).toThrow(/client authentication/)
  })
})

describe('certificateFromProxyHeader', () => {
  it('reads URL-encoded PEM (nginx $ssl_client_escaped_cert), PEM and Base64 DER', () => {
    const pem = device.certificate.toString()
    const expected = certificateFingerprint(device.certificate.raw)
    expect(certificateFingerprint(certificateFromProxyHeader(encodeURIComponent(pem)).raw)).toBe(expected)
    expect(certificateFingerprint(certificateFromProxyHeader(pem.replace(/\n/g, ' ')).raw)).toBe(expected)
    expect(certificateFingerprint(certificateFromProxyHeader(device.certificate.raw.toString('base64')).raw)).toBe(expected)
    expect(() => certificateFromProxyHeader('')).toThrow(/missing/)
    expect(() => certificateFromProxyHeader('%E0%A4%A')).toThrow()
  })
})
