import { createPrivateKey, generateKeyPairSync, publicEncrypt, constants, randomBytes, X509Certificate } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseSignedData, signCms } from '../../src/pki/cms.js'
import { der, parseDer } from '../../src/pki/der.js'
import { OID } from '../../src/pki/oids.js'
import { CIPHERS, type CipherName } from '../../src/pki/scep/ciphers.js'
import { buildCsr, buildPkiMessage, nameDer, readCertRep, selfSignedCertificate } from '../../src/pki/scep/client.js'
import { openEnvelope, sealEnvelope } from '../../src/pki/scep/envelope.js'
import { selectKey, unwrapRsaKey } from '../../src/pki/scep/key-transport.js'
import {
  buildCertRep,
  decodePkiMessage,
  MessageType,
  openCertificationRequest,
  ScepMessageError,
  ScepRequestError,
} from '../../src/pki/scep/index.js'
import { createSelfSigned, generateRsaKeyPair, type Identity } from '../../src/pki/x509.js'
import { fixtureBase64, fixtureText } from '../helpers/fixtures.js'
import { LEGACY_PROVIDERS, openssl, type OpensslRun } from '../helpers/openssl.js'

let ca: Identity
let device: { publicKey: import('node:crypto').KeyObject; privateKey: import('node:crypto').KeyObject }
let signer: { certificate: X509Certificate; privateKey: import('node:crypto').KeyObject }
let ossl: OpensslRun

beforeAll(async () => {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({
    subject: [['CN', 'Test SCEP CA']],
    keys,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86400_000),
    ca: true,
    keyUsage: ['keyCertSign', 'digitalSignature', 'keyEncipherment'],
  })
  ca = { certificate, privateKey: keys.privateKey, chain: [] }
  device = await generateRsaKeyPair(2048)
  signer = { certificate: selfSignedCertificate(device), privateKey: device.privateKey }
  ossl = openssl()
})
afterAll(() => ossl.close())

function request(options: { cipher?: CipherName; challenge?: string; messageType?: (typeof MessageType)[keyof typeof MessageType] } = {}) {
  const csr = buildCsr({ keys: device, subject: nameDer([['CN', 'device']]), challengePassword: options.challenge ?? 'let-me-in' })
  return buildPkiMessage({ messageType: options.messageType ?? MessageType.PKCSReq, content: csr, signer, recipient: ca.certificate, cipher: options.cipher })
}

describe('a recorded scepclient request', () => {
  const goCa = { certificate: new X509Certificate(fixtureText('scepserver-ca.pem')), privateKey: createPrivateKey(fixtureText('scepserver-ca.key.pem')) }

  it('decodes: SHA-1 signature, DES-CBC envelope, CSR with the challenge', () => {
    const message = decodePkiMessage(fixtureBase64('scepclient.pkcsreq.b64'))
    expect(message.messageType).toBe('19')
    expect(message.digest).toBe('sha1')
    expect(message.transactionId).toBe('PhYKFltLskWTOmEFwd5MEZBwA/8=')
    expect(message.senderNonce.toString('hex')).toBe('e051b5dc939560426ee034e61b7e13bc')
    expect(new X509Certificate(message.signerCertificate.raw).subject).toContain('CN=SCEP SIGNER')
    const opened = openCertificationRequest(message, goCa)
    expect(opened.cipher.name).toBe('des-cbc')
    expect(opened.csr.challengePassword).toBe('secret')
    expect(opened.csr.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048)
    // The CSR's subject as the client wrote it (never used for issuance).
    expect(opened.csr.subjectDer.includes(Buffer.from('hello'))).toBe(true)
  })

  it('is refused by another CA with badMessageCheck (the envelope is not ours)', () => {
    const message = decodePkiMessage(fixtureBase64('scepclient.pkcsreq.b64'))
    expect(() => openCertificationRequest(message, ca)).toThrow(expect.objectContaining({ failInfo: 'badMessageCheck' }))
  })
})

describe('envelopes interoperate with openssl cms', () => {
  const ciphers = Object.keys(CIPHERS) as CipherName[]
  const opensslFlag: Record<CipherName, string> = {
    'aes-128-cbc': '-aes-128-cbc',
    'aes-192-cbc': '-aes-192-cbc',
    'aes-256-cbc': '-aes-256-cbc',
    'des-ede3-cbc': '-des3',
    'des-cbc': '-des',
  }

  it.each(ciphers)('%s: ours decrypts with openssl, openssl\'s decrypts with ours', (name) => {
    const data = randomBytes(1000)
    const certPath = ossl.file('ca.pem', ca.certificate.toString())
    const keyPath = ossl.file('ca.key', ca.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    const sealed = sealEnvelope(data, ca.certificate, CIPHERS[name])
    ossl.file(`ours-${name}.der`, sealed)
    const decrypted = ossl.run(['cms', '-decrypt', '-inform', 'DER', '-in', `ours-${name}.der`, '-recip', certPath, '-inkey', keyPath, '-binary', ...LEGACY_PROVIDERS])
    expect(decrypted.equals(data)).toBe(true)

    ossl.file(`data-${name}.bin`, data)
    const theirs = ossl.run(['cms', '-encrypt', '-binary', '-outform', 'DER', opensslFlag[name], '-in', `data-${name}.bin`, ...LEGACY_PROVIDERS, certPath])
    const opened = openEnvelope(theirs, ca)
    expect(opened.cipher.name).toBe(name)
    expect(opened.content.equals(data)).toBe(true)
  })
})

describe('RSA key transport without a padding oracle', () => {
  const k = 256
  const key = Buffer.alloc(16, 0xab)
  const fallback = Buffer.alloc(16, 0x11)
  const valid = () => {
    const em = Buffer.alloc(k, 0x5a)
    em[0] = 0
    em[1] = 2
    em[k - 17] = 0
    key.copy(em, k - 16)
    return em
  }

  it('returns the key for a well-formed padding', () => {
    expect(selectKey(valid(), 16, fallback).equals(key)).toBe(true)
  })

  it.each([
    ['first byte not zero', (em: Buffer) => (em[0] = 1)],
    ['block type not 2', (em: Buffer) => (em[1] = 1)],
    ['a zero inside the padding string', (em: Buffer) => (em[40] = 0)],
    ['a zero in the first padding byte', (em: Buffer) => (em[2] = 0)],
    ['no separator before the key', (em: Buffer) => (em[k - 17] = 7)],
  ])('returns the fallback, never the key, when %s', (_name, spoil) => {
    const em = valid()
    spoil(em)
    expect(selectKey(em, 16, fallback).equals(fallback)).toBe(true)
  })

  it('unwraps a real PKCS#1 v1.5 ciphertext and never throws on garbage', () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const cek = randomBytes(32)
    const ct = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, cek)
    expect(unwrapRsaKey(privateKey, ct, 32).equals(cek)).toBe(true)
    // A key of another length than the cipher needs is a bad padding, not an error.
    expect(unwrapRsaKey(privateKey, ct, 16).length).toBe(16)
    expect(unwrapRsaKey(privateKey, randomBytes(256), 16).length).toBe(16)
    expect(unwrapRsaKey(privateKey, Buffer.alloc(256, 0xff), 16).length).toBe(16) // above the modulus
    expect(unwrapRsaKey(privateKey, randomBytes(12), 16).length).toBe(16) // wrong size
  })

  it('answers a wrong key in the envelope exactly like any other undecryptable envelope', () => {
    const msg = request()
    const message = decodePkiMessage(msg.der)
    // Replace the encrypted key with a random value: the RSA padding is then (almost surely) invalid.
    const env = Buffer.from(message.envelope)
    const encryptedKey = findEncryptedKey(env)
    randomBytes(encryptedKey.length).copy(env, encryptedKey.offset)
    const err = catchError(() => openCertificationRequest({ ...message, envelope: env }, ca))
    expect(err).toBeInstanceOf(ScepRequestError)
    expect(err).toMatchObject({ failInfo: 'badMessageCheck' })
  })
})

describe('round trip with our own requester side', () => {
  it.each(Object.keys(CIPHERS) as CipherName[])('%s', (cipher) => {
    const msg = request({ cipher, challenge: 'c-123' })
    const message = decodePkiMessage(msg.der)
    expect(message).toMatchObject({ messageType: '19', transactionId: msg.transactionId, digest: 'sha256' })
    expect(message.senderNonce.equals(msg.senderNonce)).toBe(true)
    const opened = openCertificationRequest(message, ca)
    expect(opened.cipher.name).toBe(cipher)
    expect(opened.csr.challengePassword).toBe('c-123')
  })

  it('builds a SUCCESS CertRep the requester decrypts, and a FAILURE with failInfo', async () => {
    const msg = request()
    const message = decodePkiMessage(msg.der)
    const success = await buildCertRep(ca, message, { status: 'SUCCESS', certificateDer: signer.certificate.raw, recipient: message.signerCertificate, cipher: CIPHERS['aes-256-cbc'] })
    const reply = readCertRep(success, { ca: ca.certificate, signer })
    expect(reply.status).toBe('SUCCESS')
    expect(reply.transactionId).toBe(msg.transactionId)
    expect(reply.recipientNonce.equals(msg.senderNonce)).toBe(true)
    expect(reply.senderNonce.length).toBe(16)
    expect(reply.certificates.map((c) => c.fingerprint256)).toEqual([signer.certificate.fingerprint256])

    const failure = readCertRep(await buildCertRep(ca, message, { status: 'FAILURE', failInfo: 'badRequest' }), { ca: ca.certificate, signer })
    expect(failure).toMatchObject({ status: 'FAILURE', failInfo: 'badRequest', certificates: [] })
  })

  it('writes the SCEP attributes with RFC 8894 types, DER-sorted', async () => {
    const message = decodePkiMessage(request().der)
    const rep = await buildCertRep(ca, message, { status: 'FAILURE', failInfo: 'badRequest' })
    const signerInfo = parseDer(rep).children[1]!.children[0]!.children.at(-1)!.children[0]!
    const attrs = signerInfo.children[3]!.children
    const encodings = attrs.map((a) => Buffer.from(a.src.subarray(a.start, a.end)))
    expect(encodings).toEqual([...encodings].sort(Buffer.compare))
    const typeOf = (oid: string) => {
      const a = attrs.find((x) => Buffer.from(x.children[0]!.src.subarray(x.children[0]!.start, x.children[0]!.end)).equals(der.oid(oid)))!
      return a.children[1]!.children[0]!.tagNumber
    }
    expect(typeOf(OID.scepMessageType)).toBe(19)
    expect(typeOf(OID.scepPkiStatus)).toBe(19)
    expect(typeOf(OID.scepFailInfo)).toBe(19)
    expect(typeOf(OID.scepTransactionId)).toBe(19)
    expect(typeOf(OID.scepRecipientNonce)).toBe(4)
    expect(typeOf(OID.scepSenderNonce)).toBe(4)
  })

  it('openssl verifies the CertRep signature', async () => {
    const rep = await buildCertRep(ca, decodePkiMessage(request().der), { status: 'FAILURE', failInfo: 'badRequest' })
    ossl.file('certrep.der', rep)
    ossl.run(['cms', '-verify', '-inform', 'DER', '-in', 'certrep.der', '-noverify', '-binary', '-out', 'content.bin'])
    expect(ossl.read('content.bin').length).toBe(0)
    expect(parseSignedData(rep).certificates[0]!.fingerprint256).toBe(ca.certificate.fingerprint256)
  })
})

describe('hostile requests', () => {
  it('refuses a CSR whose self-signature is broken', () => {
    const csr = buildCsr({ keys: device, subject: nameDer([['CN', 'device']]), challengePassword: 'x' })
    csr[csr.length - 5]! ^= 0x01
    const msg = buildPkiMessage({ messageType: MessageType.PKCSReq, content: csr, signer, recipient: ca.certificate })
    expect(catchError(() => openCertificationRequest(decodePkiMessage(msg.der), ca))).toMatchObject({ failInfo: 'badMessageCheck', message: expect.stringMatching(/self-signature/) })
  })

  it('refuses a message whose signature does not cover its content', () => {
    const msg = request()
    const tampered = Buffer.from(msg.der)
    tampered[200]! ^= 0x01 // inside the enveloped content
    expect(() => decodePkiMessage(tampered)).toThrow(ScepMessageError)
  })

  it('refuses OIDs with huge arcs, deep nesting and trailing bytes', () => {
    const hugeArc = der.sequence(der.oid(`1.2.${'9'.repeat(40)}`), der.explicit(0, der.sequence()))
    expect(() => decodePkiMessage(hugeArc)).toThrow(ScepMessageError)
    let deep: Buffer = der.null()
    for (let i = 0; i < 100; i++) deep = der.sequence(deep)
    expect(() => decodePkiMessage(deep)).toThrow(ScepMessageError)
    expect(() => decodePkiMessage(Buffer.concat([request().der, Buffer.from([0])]))).toThrow(ScepMessageError)
    expect(() => decodePkiMessage(Buffer.alloc(0))).toThrow(ScepMessageError)
  })

  it('refuses a CSR inside the envelope that carries a huge OID arc', () => {
    const bad = der.sequence(der.sequence(der.integer(0), nameDer([['CN', 'x']]), der.sequence(der.sequence(der.oid(`1.2.${'7'.repeat(30)}`)), der.bitString(Buffer.alloc(8)))), der.sequence(der.oid(OID.sha256WithRSAEncryption)), der.bitString(Buffer.alloc(8)))
    const msg = buildPkiMessage({ messageType: MessageType.PKCSReq, content: bad, signer, recipient: ca.certificate })
    expect(catchError(() => openCertificationRequest(decodePkiMessage(msg.der), ca))).toMatchObject({ failInfo: 'badMessageCheck' })
  })

  it('refuses unknown messageTypes and missing SCEP attributes', () => {
    expect(() => decodePkiMessage(request({ messageType: '99' as never }).der)).toThrow(/unknown messageType/)
    const envelope = sealEnvelope(Buffer.from('x'), ca.certificate, CIPHERS['aes-128-cbc'])
    const noNonce = signCms({ content: envelope, certificate: signer.certificate, privateKey: signer.privateKey, signedAttributes: [{ oid: OID.scepMessageType, values: [der.printable('19')] }, { oid: OID.scepTransactionId, values: [der.printable('t')] }] })
    expect(() => decodePkiMessage(noNonce)).toThrow(/senderNonce/)
  })
})

describe('property: the decoder only ever fails with its own errors', () => {
  /** Decodes like the service does; returns what happened, throws on any unexpected error type. */
  function outcome(bytes: Uint8Array): 'decoded' | 'message-error' | 'request-error' {
    let message
    try {
      message = decodePkiMessage(bytes)
    } catch (err) {
      if (err instanceof ScepMessageError) return 'message-error'
      throw err
    }
    try {
      openCertificationRequest(message, ca)
      return 'decoded'
    } catch (err) {
      if (err instanceof ScepRequestError) return 'request-error'
      throw err
    }
  }

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => void outcome(bytes)), { numRuns: 300 })
  })

  it('valid messages with bytes flipped, cut or inserted', () => {
    const base = request().der
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(base.length - 1), bits: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(base.length - 1) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(base.length - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    )
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        let bytes = Buffer.from(base)
        for (const m of mutations) {
          const at = Math.min(m.at, bytes.length - 1)
          if (m.kind === 'flip') bytes[at]! ^= m.bits
          else if (m.kind === 'cut') bytes = bytes.subarray(0, at)
          else bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)])
          if (bytes.length === 0) break
        }
        void outcome(bytes)
      }),
      { numRuns: 300 },
    )
  })

  it('valid signatures around random envelopes and random CSRs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.boolean(), (bytes, asCsr) => {
        const content = asCsr ? sealEnvelope(bytes, ca.certificate, CIPHERS['aes-128-cbc']) : bytes
        const msg = signCms({
          content,
          certificate: signer.certificate,
          privateKey: signer.privateKey,
          signedAttributes: [
            { oid: OID.scepMessageType, values: [der.printable('19')] },
            { oid: OID.scepTransactionId, values: [der.printable('t-1')] },
            { oid: OID.scepSenderNonce, values: [der.octetString(Buffer.alloc(16, 1))] },
          ],
        })
        expect(outcome(msg)).toBe('request-error')
      }),
      { numRuns: 100 },
    )
  })
})

function catchError(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected an error')
}

/** Finds the encryptedKey OCTET STRING of the first KeyTransRecipientInfo in an EnvelopedData. */
function findEncryptedKey(envelope: Buffer): { offset: number; length: number } {
  const root = parseDer(envelope)
  const ri = root.children[1]!.children[0]!.children[1]!.children[0]!
  const ek = ri.children[3]!
  return { offset: ek.contentStart, length: ek.contentEnd - ek.contentStart }
}
