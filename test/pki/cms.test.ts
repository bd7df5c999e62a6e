import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CmsError, parseSignedData, signCms, verifySingleSigner } from '../../src/pki/cms.js'
import { der, parseDer } from '../../src/pki/der.js'
import { OID } from '../../src/pki/oids.js'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'
import { fixtureBase64 } from '../helpers/fixtures.js'

const enrollBody = fixtureBase64('enroll-body.iphone12-1.ios15.b64')
const idleSignature = fixtureBase64('mdm-signature.idle.header.b64')
const idleBody = fixtureBase64('mdm-signature.idle.body.b64')

async function identity() {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({ subject: [['CN', 'cms test']], keys, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
  return { certificate, privateKey: keys.privateKey }
}

describe('parseSignedData with recorded device traffic', () => {
  it('reads and verifies the BER, SHA-1 enroll body an iPhone sent', () => {
    const signed = parseSignedData(enrollBody)
    expect(signed.contentType).toBe(OID.data)
    expect(signed.certificates.map((c) => c.subject.match(/CN=([^\n]+)/)?.[1])).toEqual([
      '41B39CB1-EA4D-4F68-8FA6-F686B6FAB424',
      'Apple iPhone Device CA',
      'Apple iPhone Certification Authority',
    ])
    const verified = verifySingleSigner(signed)
    expect(verified.signer.digest).toBe('sha1')
    expect(verified.content.toString('utf8')).toContain('<string>iPhone12,1</string>')
    expect(verified.certificate.subject).toContain('41B39CB1-EA4D-4F68-8FA6-F686B6FAB424')
  })

  it('verifies the detached Mdm-Signature a device sent over its exact body', () => {
    const signed = parseSignedData(idleSignature)
    expect(signed.content).toBeUndefined()
    const verified = verifySingleSigner(signed, idleBody)
    expect(verified.content.equals(idleBody)).toBe(true)
  })

  it('rejects the Mdm-Signature when one byte of the body changes', () => {
    const body = Buffer.from(idleBody)
    body[body.length - 20] = body[body.length - 20]! ^ 0x01
    expect(() => verifySingleSigner(parseSignedData(idleSignature), body)).toThrow(/messageDigest does not match|signature does not verify/)
  })

  it('rejects an enroll body whose content was altered', () => {
    const altered = Buffer.from(enrollBody)
    const at = altered.indexOf(Buffer.from('iPhone12,1'))
    altered.write('iPhone99,9', at)
    expect(() => verifySingleSigner(parseSignedData(altered))).toThrow(CmsError)
  })
})

describe('signCms', () => {
  it('produces attached and detached signatures that openssl verifies', async () => {
    const id = await identity()
    const dir = mkdtempSync(path.join(tmpdir(), 'cms-'))
    const content = Buffer.from('<plist>hello</plist>')
    writeFileSync(path.join(dir, 'signer.pem'), id.certificate.toString())
    writeFileSync(path.join(dir, 'content'), content)

    writeFileSync(path.join(dir, 'attached.der'), signCms({ content, ...id }))
    const out = execFileSync('openssl', ['cms', '-verify', '-inform', 'DER', '-in', path.join(dir, 'attached.der'), '-CAfile', path.join(dir, 'signer.pem'), '-purpose', 'any'], { stdio: ['ignore', 'pipe', 'pipe'] })
    expect(out.equals(content)).toBe(true)

    writeFileSync(path.join(dir, 'detached.der'), signCms({ content, ...id, detached: true, digest: 'sha1' }))
    execFileSync('openssl', ['cms', '-verify', '-binary', '-inform', 'DER', '-in', path.join(dir, 'detached.der'), '-content', path.join(dir, 'content'), '-CAfile', path.join(dir, 'signer.pem'), '-purpose', 'any'], { stdio: ['ignore', 'pipe', 'pipe'] })

    // And our own reader agrees.
    expect(verifySingleSigner(parseSignedData(signCms({ content, ...id }))).content.equals(content)).toBe(true)
  })

  it('verifies what openssl signs, including a detached SHA-1 signature', async () => {
    const id = await identity()
    const dir = mkdtempSync(path.join(tmpdir(), 'cms-'))
    writeFileSync(path.join(dir, 'cert.pem'), id.certificate.toString())
    writeFileSync(path.join(dir, 'key.pem'), id.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    const body = Buffer.from('<?xml version="1.0"?><plist><dict/></plist>')
    writeFileSync(path.join(dir, 'body'), body)
    const sig = execFileSync('openssl', ['cms', '-sign', '-binary', '-outform', 'DER', '-md', 'sha1', '-in', path.join(dir, 'body'), '-signer', path.join(dir, 'cert.pem'), '-inkey', path.join(dir, 'key.pem')])
    const verified = verifySingleSigner(parseSignedData(sig), body)
    expect(verified.certificate.fingerprint256).toBe(id.certificate.fingerprint256)
    expect(verified.signer.digest).toBe('sha1')
  })

  it('sorts signed attributes in DER order', async () => {
    const id = await identity()
    const extra = [{ oid: OID.scepTransactionId, values: [der.printable('abc')] }, { oid: OID.scepMessageType, values: [der.printable('3')] }]
    const signed = parseSignedData(signCms({ content: Buffer.from('x'), ...id, signedAttributes: extra }))
    const attrs = parseDer(signed.signers[0]!.signedAttributesDer!).children.map((c) => Buffer.from(c.src.subarray(c.start, c.end)))
    expect(attrs.map((a) => a.toString('hex'))).toEqual([...attrs].sort(Buffer.compare).map((a) => a.toString('hex')))
  })
})

describe('hostile CMS', () => {
  it('refuses two signers, deep nesting and truncation with a CmsError', async () => {
    const deep = Buffer.concat([...Array(5000)].map(() => Buffer.from([0x30, 0x80])))
    expect(() => parseSignedData(deep)).toThrow(/nesting deeper/)
    expect(() => parseSignedData(enrollBody.subarray(0, enrollBody.length - 10))).toThrow(CmsError)
    expect(() => parseSignedData(Buffer.from('not cms at all'))).toThrow(CmsError)
    expect(() => parseSignedData(Buffer.alloc(0))).toThrow(CmsError)
  })

  it('never throws anything but CmsError on random or mutated input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          parseSignedData(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(CmsError)
        }
      }),
      { numRuns: 2000 },
    )
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(enrollBody.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const mutated = Buffer.from(enrollBody)
        for (const [at, value] of edits) mutated[at] = value
        try {
          verifySingleSigner(parseSignedData(mutated))
        } catch (err) {
          expect(err).toBeInstanceOf(CmsError)
        }
      }),
      { numRuns: 500 },
    )
  })
})
