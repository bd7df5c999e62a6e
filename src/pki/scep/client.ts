/**
 * The requester's side of SCEP (RFC 8894 sections 3.2-3.3), as a device builds and reads the messages.
 * The server never calls this; tests, the benchmark and the device simulator do, so they exercise the
 * server with messages built independently of its decoder (and tests cross-check with scepclient and
 * openssl, which share no code with either).
 */
import { randomBytes, sign as cryptoSign, X509Certificate, constants, type KeyObject } from 'node:crypto'
import { parseSignedData, signCms, signedAttributeValue, verifySingleSigner } from '../cms.js'
import { der, octetsOf, stringOf } from '../der.js'
import { nameDer } from '../names.js'
import { OID, type DigestName } from '../oids.js'
import { CIPHERS, type CipherName } from './ciphers.js'
import { openEnvelope, sealEnvelope } from './envelope.js'
import { FailInfo, PkiStatus, type FailInfoName, type MessageType } from './types.js'

export interface KeyPairLike {
  publicKey: KeyObject
  privateKey: KeyObject
}

export interface SignerIdentity {
  certificate: X509Certificate
  privateKey: KeyObject
}

export { nameDer }

function signatureAlgorithm(key: KeyObject, digest: DigestName): Buffer {
  if (key.asymmetricKeyType === 'rsa') {
    const oid = { sha1: OID.sha1WithRSAEncryption, sha256: OID.sha256WithRSAEncryption, sha384: OID.sha384WithRSAEncryption, sha512: OID.sha512WithRSAEncryption }[digest]
    return der.sequence(der.oid(oid), der.null())
  }
  const oid = { sha1: OID.ecdsaWithSHA1, sha256: OID.ecdsaWithSHA256, sha384: OID.ecdsaWithSHA384, sha512: OID.ecdsaWithSHA512 }[digest]
  return der.sequence(der.oid(oid))
}

function signBytes(key: KeyObject, digest: DigestName, data: Uint8Array): Buffer {
  return key.asymmetricKeyType === 'rsa'
    ? cryptoSign(digest, data, { key, padding: constants.RSA_PKCS1_PADDING })
    : cryptoSign(digest, data, { key, dsaEncoding: 'der' })
}

/** A signed structure: SEQUENCE { tbs, algorithm, BIT STRING signature } (certificates and CSRs). */
function signed(tbs: Buffer, key: KeyObject, digest: DigestName): Buffer {
  return der.sequence(tbs, signatureAlgorithm(key, digest), der.bitString(signBytes(key, digest, tbs)))
}

export interface CsrOptions {
  keys: KeyPairLike
  subject: Buffer
  challengePassword?: string
  digest?: DigestName
}

/** A PKCS#10 request (RFC 2986) with an optional challengePassword attribute. */
export function buildCsr(options: CsrOptions): Buffer {
  const attributes = options.challengePassword === undefined
    ? []
    : [der.sequence(der.oid(OID.challengePassword), der.set(der.utf8(options.challengePassword)))]
  const info = der.sequence(
    der.integer(0),
    options.subject,
    options.keys.publicKey.export({ type: 'spki', format: 'der' }),
    der.implicit(0, true, Buffer.concat(attributes)),
  )
  return signed(info, options.keys.privateKey, options.digest ?? 'sha256')
}

/** The short-lived self-signed certificate a requester signs its first PKCSReq with (RFC 8894 2.3). */
export function selfSignedCertificate(keys: KeyPairLike, subject: Buffer = nameDer([['CN', 'SCEP SIGNER']]), digest: DigestName = 'sha256'): X509Certificate {
  const now = Date.now()
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(randomBytes(8).toString('hex').replace(/^[89a-f]/, '1')),
    signatureAlgorithm(keys.privateKey, digest),
    subject,
    der.sequence(der.utcTime(new Date(now - 3600_000)), der.utcTime(new Date(now + 3600_000))),
    subject,
    keys.publicKey.export({ type: 'spki', format: 'der' }),
  )
  return new X509Certificate(signed(tbs, keys.privateKey, digest))
}

export interface PkiMessageOptions {
  messageType: MessageType
  /** The DER inside the envelope: a CSR for PKCSReq and RenewalReq. */
  content: Uint8Array
  signer: SignerIdentity
  /** The CA (or RA) certificate the envelope is encrypted to. */
  recipient: X509Certificate
  cipher?: CipherName
  digest?: DigestName
  transactionId?: string
  senderNonce?: Buffer
}

export interface BuiltPkiMessage {
  der: Buffer
  transactionId: string
  senderNonce: Buffer
}

/** A pkiMessage: SignedData by the signer over the envelope, with the SCEP attributes. */
export function buildPkiMessage(options: PkiMessageOptions): BuiltPkiMessage {
  const transactionId = options.transactionId ?? randomBytes(20).toString('hex')
  const senderNonce = options.senderNonce ?? randomBytes(16)
  const envelope = sealEnvelope(options.content, options.recipient, CIPHERS[options.cipher ?? 'aes-128-cbc'])
  const message = signCms({
    content: envelope,
    certificate: options.signer.certificate,
    privateKey: options.signer.privateKey,
    digest: options.digest ?? 'sha256',
    signedAttributes: [
      { oid: OID.scepMessageType, values: [der.printable(options.messageType)] },
      { oid: OID.scepTransactionId, values: [der.printable(transactionId)] },
      { oid: OID.scepSenderNonce, values: [der.octetString(senderNonce)] },
    ],
  })
  return { der: message, transactionId, senderNonce }
}

export interface CertRepReply {
  status: 'SUCCESS' | 'FAILURE' | 'PENDING'
  failInfo?: FailInfoName
  transactionId: string
  recipientNonce: Buffer
  senderNonce: Buffer
  /** The issued certificate(s) on SUCCESS. */
  certificates: X509Certificate[]
}

/**
 * Reads a CertRep: checks it is signed by `ca`, reads the attributes and, on SUCCESS, decrypts the
 * certificates with the requester's key. Throws on anything malformed.
 */
export function readCertRep(input: Uint8Array, options: { ca: X509Certificate; signer: SignerIdentity }): CertRepReply {
  const signed = parseSignedData(input)
  const { signer, certificate, content } = verifySingleSigner(signed)
  if (certificate.fingerprint256 !== options.ca.fingerprint256) throw new Error('the CertRep is not signed by the CA certificate')
  const text = (oid: string) => {
    const v = signedAttributeValue(signer, oid)
    return v ? stringOf(v) : undefined
  }
  const bytes = (oid: string) => {
    const v = signedAttributeValue(signer, oid)
    return v ? octetsOf(v) : Buffer.alloc(0)
  }
  if (text(OID.scepMessageType) !== '3') throw new Error('not a CertRep')
  const statusValue = text(OID.scepPkiStatus)
  const status = (Object.keys(PkiStatus) as (keyof typeof PkiStatus)[]).find((k) => PkiStatus[k] === statusValue)
  if (!status) throw new Error(`unknown pkiStatus ${statusValue}`)
  const failValue = text(OID.scepFailInfo)
  const failInfo = (Object.keys(FailInfo) as FailInfoName[]).find((k) => FailInfo[k] === failValue)
  let certificates: X509Certificate[] = []
  if (status === 'SUCCESS') {
    const opened = openEnvelope(content, options.signer)
    certificates = parseSignedData(opened.content).certificates
  }
  return {
    status,
    failInfo,
    transactionId: text(OID.scepTransactionId) ?? '',
    recipientNonce: bytes(OID.scepRecipientNonce),
    senderNonce: bytes(OID.scepSenderNonce),
    certificates,
  }
}
