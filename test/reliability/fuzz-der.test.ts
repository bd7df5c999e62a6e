/**
 * Property-based fuzzing of the DER readers (SECURITY.md row 19): the bounded ASN.1 reader
 * (src/pki/der.ts), certificates as the CMS readers take them apart (src/pki/certificate.ts) and the
 * PKCS#10 requests inside SCEP envelopes (src/pki/scep/csr.ts). Inputs are mutations of real
 * certificates (Apple's CAs and a device certificate from a recorded enroll body, a Go SCEP CA, ours)
 * and CSRs (RSA and EC, with a challengePassword), with DER length edits, plus random DER trees. Every
 * input is read or refused with the reader's own error in bounded time; a mutated CSR that is accepted
 * still carries the original key and challenge (its self-signature holds).
 */
import { generateKeyPairSync, X509Certificate, createPrivateKey } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { parseSignedData } from '../../src/pki/cms.js'
import { certificateFromProxyHeader } from '../../src/pki/mdm-signature.js'
import { certificateParts, parseCertificate } from '../../src/pki/certificate.js'
import { Asn1Error, parseDer, tlv } from '../../src/pki/der.js'
import { AppError } from '../../src/errors.js'
import { buildCsr, nameDer } from '../../src/pki/scep/client.js'
import { parseCertificationRequest } from '../../src/pki/scep/csr.js'
import { decodePkiMessage, openCertificationRequest } from '../../src/pki/scep/message.js'
import { ScepRequestError } from '../../src/pki/scep/types.js'
import { fixtureBase64, fixtureText } from '../helpers/fixtures.js'
import { applyAll, classify, derLengthOffsets, hex, kinds, mutationArb, runs, Tally } from './fuzz.js'

const tallies: Record<string, Tally> = {}
const tally = (name: string) => (tallies[name] ??= new Tally())
afterAll(() => {
  for (const [name, t] of Object.entries(tallies)) t.record(`fuzz: ${name}`)
})

const spki = (key: { export(o: { type: 'spki'; format: 'der' }): Buffer }) => key.export({ type: 'spki', format: 'der' }).toString('hex')

const goCa = { certificate: new X509Certificate(fixtureText('scepserver-ca.pem')), privateKey: createPrivateKey(fixtureText('scepserver-ca.key.pem')) }
const certificates = [...parseSignedData(fixtureBase64('enroll-body.iphone12-1.ios15.b64')).certificates.map((c) => c.raw), goCa.certificate.raw]

/** Mutations of one of `inputs`, with DER length edits at real length octets of each. */
function mutatedOf(inputs: Buffer[]) {
  const offsets = inputs.map((i) => derLengthOffsets(i))
  return fc.nat(inputs.length - 1).chain((which) => fc.tuple(fc.constant(which), fc.array(mutationArb({ derOffsets: offsets[which] }), { minLength: 1, maxLength: 3 })))
}

describe('certificates', () => {
  it('mutated certificates are taken apart or refused with an Asn1Error, by both readers, in bounded time', () => {
    const parts = tally('DER certificate (our reader)')
    const openssl = tally('DER certificate (OpenSSL via node:crypto)')
    expect(certificates.length).toBe(4)
    fc.assert(
      fc.property(mutatedOf(certificates), ([which, mutations]) => {
        const der = applyAll(certificates[which]!, mutations)
        const describe = () => `${which} ${kinds(mutations)} ${hex(der)}`
        classify(parts, () => certificateParts(der), (err) => err instanceof Asn1Error, describe)
        classify(openssl, () => parseCertificate(der), (err) => err instanceof Asn1Error, describe)
      }),
      { numRuns: runs(400) },
    )
    expect(parts.failures).toBe('')
    expect(openssl.failures).toBe('')
    expect(parts.refused).toBeGreaterThan(parts.inputs / 4)
  })

  it('a client certificate header from a proxy, mangled: read or a 400', () => {
    const t = tally('DER certificate (proxy header)')
    const pem = goCa.certificate.toString()
    const forms = [encodeURIComponent(pem), pem, goCa.certificate.raw.toString('base64')]
    fc.assert(
      fc.property(fc.nat(forms.length - 1), fc.array(mutationArb({ tokens: ['%', '%0A', '-----END CERTIFICATE-----', '-----BEGIN CERTIFICATE-----', '=', '\n'] }), { minLength: 1, maxLength: 3 }), (which, mutations) => {
        const header = applyAll(Buffer.from(forms[which]!, 'latin1'), mutations).toString('latin1')
        classify(t, () => certificateFromProxyHeader(header), (err) => err instanceof AppError && err.status === 400, () => `${which} ${kinds(mutations)} ${header.slice(0, 120)}`)
      }),
      { numRuns: runs(300) },
    )
    expect(t.failures).toBe('')
  })
})

describe('certification requests (PKCS#10)', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const recorded = openCertificationRequest(decodePkiMessage(fixtureBase64('scepclient.pkcsreq.b64')), goCa).csr
  const csrs = [
    { der: buildCsr({ keys: rsa, subject: nameDer([['CN', 'fuzz'], ['O', 'Example']]), challengePassword: 'challenge-rsa' }), key: spki(rsa.publicKey), challenge: 'challenge-rsa' },
    { der: buildCsr({ keys: ec, subject: nameDer([['CN', 'fuzz-ec']]), challengePassword: 'challenge-ec' }), key: spki(ec.publicKey), challenge: 'challenge-ec' },
    { der: recorded.der, key: spki(recorded.publicKey), challenge: 'secret' },
  ]

  it('mutated CSRs are refused (badMessageCheck/badAlg/badRequest), or verify with the original key and challenge', () => {
    const t = tally('DER CSR')
    fc.assert(
      fc.property(mutatedOf(csrs.map((c) => c.der)), ([which, mutations]) => {
        const der = applyAll(csrs[which]!.der, mutations)
        const result = classify(t, () => parseCertificationRequest(der), (err) => err instanceof ScepRequestError, () => `${which} ${kinds(mutations)} ${hex(der)}`)
        if (result.ok) {
          expect(spki(result.value.publicKey)).toBe(csrs[which]!.key)
          expect(result.value.challengePassword).toBe(csrs[which]!.challenge)
        }
      }),
      { numRuns: runs(400) },
    )
    expect(t.failures).toBe('')
    expect(t.refused).toBeGreaterThan(t.inputs / 2)
  })
})

/** Random DER trees: any tag class and number, nesting, and lengths that lie. */
const tree: fc.Arbitrary<Buffer> = fc.letrec<{ node: Buffer }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small' },
    fc.tuple(fc.nat(3), fc.integer({ min: 0, max: 30 }), fc.uint8Array({ maxLength: 24 })).map(([cls, n, bytes]) => tlv(cls, false, n, bytes)),
    fc.tuple(fc.nat(3), fc.integer({ min: 0, max: 30 }), fc.array(tie('node'), { maxLength: 4 })).map(([cls, n, kids]) => tlv(cls, true, n, Buffer.concat(kids))),
  ),
})).node

describe('the ASN.1 reader', () => {
  it('random trees, mutated, are read or refused with an Asn1Error; deep or huge ones within the limits', () => {
    const t = tally('DER reader (random trees)')
    fc.assert(
      fc.property(tree, fc.array(mutationArb(), { maxLength: 2 }), fc.constantFrom(undefined, { maxDepth: 12, maxNodes: 500 }), (der, mutations, limits) => {
        const input = applyAll(der, mutations)
        classify(t, () => parseDer(input, limits), (err) => err instanceof Asn1Error, () => `${kinds(mutations)} ${hex(input)}`)
      }),
      { numRuns: runs(500) },
    )
    expect(t.failures).toBe('')
  })

  it('a 10,000-deep nesting, a length claiming 4 GB, an unterminated indefinite length and a huge tag number are refused at once', () => {
    let deep: Buffer = Buffer.from([0x05, 0x00])
    for (let i = 0; i < 10_000; i++) deep = tlv(0, true, 16, deep)
    const t = tally('DER reader (extremes)')
    for (const input of [deep, Buffer.from('3084ffffffff0000', 'hex'), Buffer.from('3080', 'hex'), Buffer.from('1f8fffffffffffffff7f00', 'hex')]) {
      const result = classify(t, () => parseDer(input), (err) => err instanceof Asn1Error, () => hex(input))
      expect(result.ok).toBe(false)
    }
    expect(t.failures).toBe('')
  })
})
