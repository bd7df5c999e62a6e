/**
 * Property-based fuzzing of every CMS a device sends (SECURITY.md rows 7, 18, 19, 24): the
 * `Mdm-Signature` header (src/pki/mdm-signature.ts), the enroll body's signed plist
 * (src/pki/apple-device.ts), SCEP pkiMessages and their envelopes (src/pki/scep). Inputs are mutations
 * of recorded device traffic (test/fixtures) and of messages our own codec builds: byte flips, inserts,
 * deletes, truncations and DER length edits. Every input is verified or refused with the parser's own
 * error within a bounded time, and anything accepted is still signed by the original key over the
 * original content: a mutation never forges a signature. A valid signature with one byte of the signed
 * body changed is always refused.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/errors.js'
import { verifyDeviceSignature } from '../../src/pki/apple-device.js'
import { CmsError, parseSignedData, signCms } from '../../src/pki/cms.js'
import { DeviceIdentityError, verifyMdmSignature } from '../../src/pki/mdm-signature.js'
import { CIPHERS } from '../../src/pki/scep/ciphers.js'
import { buildCsr, buildPkiMessage, nameDer, selfSignedCertificate } from '../../src/pki/scep/client.js'
import { openEnvelope, sealEnvelope } from '../../src/pki/scep/envelope.js'
import { decodePkiMessage, openCertificationRequest } from '../../src/pki/scep/message.js'
import { MessageType, ScepMessageError, ScepRequestError } from '../../src/pki/scep/types.js'
import { parseCertificationRequest } from '../../src/pki/scep/csr.js'
import { createSelfSigned, generateRsaKeyPair, type KeyPair } from '../../src/pki/x509.js'
import { fixtureBase64, fixtureText } from '../helpers/fixtures.js'
import { applyAll, classify, derLengthOffsets, FILE_TIMEOUT, hex, kinds, mutationArb, mutationsArb, runs, Tally } from './fuzz.js'

const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' }).toString('hex')

const tallies: Record<string, Tally> = {}
const tally = (name: string) => (tallies[name] ??= new Tally())
afterAll(() => {
  for (const [name, t] of Object.entries(tallies)) t.record(`fuzz: ${name}`)
})

const recordedHeader = fixtureBase64('mdm-signature.idle.header.b64')
const recordedBody = fixtureBase64('mdm-signature.idle.body.b64')
const enrollBody = fixtureBase64('enroll-body.iphone12-1.ios15.b64')
const scepclientRequest = fixtureBase64('scepclient.pkcsreq.b64')
const goCa = { certificate: new X509Certificate(fixtureText('scepserver-ca.pem')), privateKey: createPrivateKey(fixtureText('scepserver-ca.key.pem')) }

/** A second Mdm-Signature made by our signer: DER with definite lengths and SHA-256 (the recorded one is BER, SHA-1). */
let ours: { header: Buffer; body: Buffer; key: string }
let deviceKeys: KeyPair

beforeAll(async () => {
  deviceKeys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({ subject: [['CN', 'fuzzed device']], keys: deviceKeys, notBefore: new Date(Date.now() - 86400_000), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
  const body = Buffer.from(recordedBody)
  ours = { header: signCms({ content: body, certificate, privateKey: deviceKeys.privateKey, detached: true, digest: 'sha256' }), body, key: spki(certificate.publicKey) }
})

const recordedKey = () => spki(verifyMdmSignature(recordedHeader.toString('base64'), recordedBody).publicKey)

describe('Mdm-Signature', () => {
  const refusal = (err: unknown) => err instanceof AppError && (err.status === 400 || err.status === 403)

  it('mutated signatures are refused with a 400/403 or still name the original signer, in bounded time', () => {
    const t = tally('CMS Mdm-Signature')
    const signatures = [
      { header: recordedHeader, body: recordedBody, key: recordedKey() },
      { header: ours.header, body: ours.body, key: ours.key },
    ]
    const offsets = signatures.map((s) => derLengthOffsets(s.header))
    fc.assert(
      fc.property(fc.nat(1), fc.array(fc.oneof(mutationArb({ derOffsets: offsets[0] }), mutationArb({ derOffsets: offsets[1] })), { minLength: 1, maxLength: 3 }), (which, mutations) => {
        const s = signatures[which]!
        const header = applyAll(s.header, mutations)
        const result = classify(t, () => verifyMdmSignature(header.toString('base64'), s.body), refusal, () => `${which} ${kinds(mutations)} ${hex(header)}`)
        // Accepted: the DER changed somewhere the signature does not cover (the certificate's own signature,
        // an unused field), and the signer is the same key: nothing was forged.
        if (result.ok) expect(spki(result.value.publicKey)).toBe(s.key)
      }),
      { numRuns: runs(400) },
    )
    expect(t.failures).toBe('')
    expect(t.refused).toBeGreaterThan(t.inputs / 2)
  })

  it('the header text itself mangled (not Base64, whitespace, huge) is a 400', () => {
    const t = tally('CMS Mdm-Signature (header text)')
    const text = recordedHeader.toString('base64')
    fc.assert(
      fc.property(mutationsArb({ tokens: ['=', '==', ' ', '\n', '-', '_', '%', '\u00e9', 'A'.repeat(100_000)] }), (mutations) => {
        const header = applyAll(Buffer.from(text, 'latin1'), mutations).toString('latin1')
        const result = classify(t, () => verifyMdmSignature(header, recordedBody), refusal, () => `${kinds(mutations)} ${header.slice(0, 120)}`)
        if (result.ok) expect(spki(result.value.publicKey)).toBe(recordedKey())
      }),
      { numRuns: runs(300) },
    )
    expect(t.failures).toBe('')
  })

  it('one byte of the signed body changed: always refused (403 device_identity_rejected)', () => {
    const t = tally('CMS Mdm-Signature (body byte changed)')
    fc.assert(
      fc.property(fc.nat(1), fc.nat(), fc.integer({ min: 1, max: 255 }), (which, at, x) => {
        const s = which ? { header: ours.header, body: ours.body } : { header: recordedHeader, body: recordedBody }
        const body = Buffer.from(s.body)
        body[at % body.length]! ^= x
        const result = classify(t, () => verifyMdmSignature(s.header.toString('base64'), body), (err) => err instanceof DeviceIdentityError, () => `byte ${at % body.length} ^ ${x}`)
        expect(result.ok).toBe(false)
      }),
      { numRuns: runs(300) },
    )
    expect(t.refused).toBe(t.inputs)
  })
})

describe('enroll body (attached CMS from the device)', () => {
  it('mutated bodies are refused with a CmsError, or verify with the same signer over the same content', () => {
    const t = tally('CMS enroll body')
    const original = verifyDeviceSignature(enrollBody)
    const key = spki(original.signer.publicKey)
    const offsets = derLengthOffsets(enrollBody)
    expect(offsets.length).toBeGreaterThan(50)
    fc.assert(
      fc.property(mutationsArb({ derOffsets: offsets }), (mutations) => {
        const body = applyAll(enrollBody, mutations)
        const result = classify(t, () => verifyDeviceSignature(body), (err) => err instanceof CmsError, () => `${kinds(mutations)} ${hex(body)}`)
        if (result.ok) {
          expect(result.value.content.equals(original.content)).toBe(true)
          expect(spki(result.value.signer.publicKey)).toBe(key)
        }
      }),
      { numRuns: runs(400) },
    )
    expect(t.failures).toBe('')
    expect(t.refused).toBeGreaterThan(t.inputs / 2)
  })

  it('one byte of the signed plist changed inside the CMS: always refused', () => {
    const t = tally('CMS enroll body (content byte changed)')
    const { content } = verifyDeviceSignature(enrollBody)
    // The content sits in the body as-is (BER OCTET STRING chunks of it): change bytes where it is found.
    const head = content.subarray(0, 24)
    const start = enrollBody.indexOf(head)
    expect(start).toBeGreaterThan(0)
    fc.assert(
      fc.property(fc.nat(23), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const body = Buffer.from(enrollBody)
        body[start + at]! ^= x
        const result = classify(t, () => verifyDeviceSignature(body), (err) => err instanceof CmsError, () => `content byte ${at} ^ ${x}`)
        expect(result.ok).toBe(false)
      }),
      { numRuns: runs(100) },
    )
    expect(t.refused).toBe(t.inputs)
  })
})

describe('SCEP pkiMessage', () => {
  const refusal = (err: unknown) => err instanceof ScepMessageError || err instanceof ScepRequestError

  it('mutated PKCSReq messages (scepclient capture and ours) are refused, or decode to the same envelope and signer', () => {
    const t = tally('CMS SCEP pkiMessage')
    const built = buildPkiMessage({
      messageType: MessageType.PKCSReq,
      content: buildCsr({ keys: deviceKeys, subject: nameDer([['CN', 'fuzz']]), challengePassword: 'fuzz-challenge' }),
      signer: { certificate: selfSignedCertificate(deviceKeys), privateKey: deviceKeys.privateKey },
      recipient: goCa.certificate,
    }).der
    const messages = [scepclientRequest, built]
    const originals = messages.map((m) => decodePkiMessage(m))
    const offsets = messages.map((m) => derLengthOffsets(m))
    fc.assert(
      fc.property(fc.nat(1), fc.array(fc.oneof(mutationArb({ derOffsets: offsets[0] }), mutationArb({ derOffsets: offsets[1] })), { minLength: 1, maxLength: 3 }), (which, mutations) => {
        const input = applyAll(messages[which]!, mutations)
        const result = classify(t, () => decodePkiMessage(input), refusal, () => `${which} ${kinds(mutations)} ${hex(input)}`)
        if (result.ok) {
          const original = originals[which]!
          expect(result.value.envelope.equals(original.envelope)).toBe(true)
          expect(spki(result.value.signerCertificate.publicKey)).toBe(spki(original.signerCertificate.publicKey))
          expect(result.value.transactionId).toBe(original.transactionId)
        }
      }),
      { numRuns: runs(300) },
    )
    expect(t.failures).toBe('')
    expect(t.refused).toBeGreaterThan(t.inputs / 2)
  })

  it('mutated envelopes (encrypted to the CA) are refused, or hold a CSR by the same key with the same challenge', () => {
    const t = tally('CMS SCEP envelope + CSR')
    const csr = buildCsr({ keys: deviceKeys, subject: nameDer([['CN', 'fuzz']]), challengePassword: 'fuzz-challenge' })
    const envelopes = [sealEnvelope(csr, goCa.certificate, CIPHERS['aes-128-cbc']), sealEnvelope(csr, goCa.certificate, CIPHERS['des-ede3-cbc'])]
    const offsets = envelopes.map((e) => derLengthOffsets(e))
    const key = spki(deviceKeys.publicKey)
    fc.assert(
      fc.property(fc.nat(1), fc.array(fc.oneof(mutationArb({ derOffsets: offsets[0] }), mutationArb({ derOffsets: offsets[1] })), { minLength: 1, maxLength: 2 }), (which, mutations) => {
        const envelope = applyAll(envelopes[which]!, mutations)
        const result = classify(
          t,
          () => {
            const opened = openEnvelope(envelope, goCa)
            return parseCertificationRequest(opened.content)
          },
          refusal,
          () => `${which} ${kinds(mutations)} ${hex(envelope)}`,
        )
        if (result.ok) {
          expect(spki(result.value.publicKey)).toBe(key)
          expect(result.value.challengePassword).toBe('fuzz-challenge')
        }
      }),
      // Each input that reaches the key transport costs an RSA decryption in JavaScript (node-forge).
      { numRuns: runs(300) },
    )
    expect(t.failures).toBe('')
  }, FILE_TIMEOUT)

  it('the recorded scepclient request opens with the Go CA key (the fuzzers start from a valid message)', () => {
    const opened = openCertificationRequest(decodePkiMessage(scepclientRequest), goCa)
    expect(opened.csr.challengePassword).toBe('secret')
    expect(parseSignedData(scepclientRequest, undefined, { parseCertificates: false }).signers).toHaveLength(1)
  })
})
