/**
 * The SCEP pkiMessage (RFC 8894 section 3.2): a CMS SignedData whose signed attributes carry the SCEP
 * fields and whose content is the pkcsPKIEnvelope. Decoding verifies the signature with the certificate
 * the message carries (self-signed for PKCSReq, one we issued for RenewalReq); whether that certificate
 * is acceptable is the service's decision.
 */
import type { KeyObject } from 'node:crypto'
import { certificateParts, type CertificateParts } from '../certificate.js'
import { CmsError, identifiesCertificate, parseSignedData, signedAttributeValue, verifySigner, type SignerInfo } from '../cms.js'
import { isUniversal, octetsOf, stringOf, Tag, type Asn1Node } from '../der.js'
import { OID, type DigestName } from '../oids.js'
import { publicKeyFromSpki } from '../public-key.js'
import { openEnvelope, type OpenedEnvelope, type Recipient } from './envelope.js'
import { parseCertificationRequest, type CertificationRequest } from './csr.js'
import { MessageType, ScepMessageError } from './types.js'

/** A PKIOperation message is a CSR, two certificates and a signature: shallow and a few KiB. */
const MESSAGE_LIMITS = { maxDepth: 24, maxNodes: 5_000 }

/** PrintableString's alphabet (X.680 41.4); transactionIDs must be PrintableStrings (RFC 8894 3.2.1.1). */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]{1,255}$/

const MESSAGE_TYPES = new Set<string>(Object.values(MessageType))

/** The certificate that signed a pkiMessage, read without OpenSSL's full certificate parse. */
export interface SignerCertificate {
  /** DER, exactly as carried (renewal looks it up by fingerprint). */
  raw: Buffer
  parts: CertificateParts
  publicKey: KeyObject
}

export interface PkiMessage {
  messageType: MessageType
  transactionId: string
  senderNonce: Buffer
  /** The certificate that signed the message; the CertRep is encrypted to it. */
  signerCertificate: SignerCertificate
  digest: DigestName
  /** The pkcsPKIEnvelope: a ContentInfo with EnvelopedData, still encrypted. */
  envelope: Buffer
}

/** Reads and verifies a pkiMessage. Throws ScepMessageError when it cannot be trusted at all. */
export function decodePkiMessage(input: Uint8Array): PkiMessage {
  try {
    const signed = parseSignedData(input, MESSAGE_LIMITS, { parseCertificates: false })
    if (signed.contentType !== OID.data) throw new ScepMessageError('the pkiMessage content is not id-data')
    if (signed.signers.length !== 1) throw new ScepMessageError(`expected exactly one signer, found ${signed.signers.length}`)
    const signer = signed.signers[0]!
    if (!signed.content) throw new ScepMessageError('the pkiMessage has no content')
    const signerCertificate = findSigner(signer, signed.certificateDers)
    verifySigner(signer, signed.content, signerCertificate.publicKey, signed.contentType)
    const messageType = printable(signer, OID.scepMessageType, 'messageType')
    if (!MESSAGE_TYPES.has(messageType)) throw new ScepMessageError(`unknown messageType ${messageType}`)
    const transactionId = printable(signer, OID.scepTransactionId, 'transactionID')
    const nonce = attribute(signer, OID.scepSenderNonce, 'senderNonce')
    if (!isUniversal(nonce, Tag.OCTET_STRING)) throw new ScepMessageError('senderNonce is not an OCTET STRING')
    const senderNonce = octetsOf(nonce)
    // RFC 8894 3.2.1.5: 16 bytes; be lenient about the size but not about absurd values.
    if (senderNonce.length < 8 || senderNonce.length > 64) throw new ScepMessageError('senderNonce of unreasonable length')
    return { messageType: messageType as MessageType, transactionId, senderNonce, signerCertificate, digest: signer.digest, envelope: signed.content }
  } catch (err) {
    if (err instanceof ScepMessageError) throw err
    if (err instanceof CmsError) throw new ScepMessageError(err.message, { cause: err })
    throw new ScepMessageError(`malformed pkiMessage: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * The carried certificate the SignerInfo names, with its key. Self-signed for a PKCSReq, so nothing
 * about it is trusted but its key; a RenewalReq's must match a stored certificate byte for byte.
 */
function findSigner(signer: SignerInfo, ders: Buffer[]): SignerCertificate {
  for (const raw of ders) {
    const parts = certificateParts(raw)
    if (identifiesCertificate(signer.sid, parts)) return { raw, parts, publicKey: publicKeyFromSpki(parts.spkiDer) }
  }
  throw new ScepMessageError('the signer certificate is not included')
}

function attribute(signer: SignerInfo, oid: string, name: string): Asn1Node {
  const value = signedAttributeValue(signer, oid)
  if (!value) throw new ScepMessageError(`the pkiMessage has no ${name} attribute`)
  return value
}

/** A PrintableString attribute. UTF8String is tolerated when its text fits PrintableString. */
function printable(signer: SignerInfo, oid: string, name: string): string {
  const value = attribute(signer, oid, name)
  if (!isUniversal(value, Tag.PRINTABLE_STRING) && !isUniversal(value, Tag.UTF8_STRING)) {
    throw new ScepMessageError(`${name} is not a PrintableString`)
  }
  const text = stringOf(value)
  if (!PRINTABLE.test(text)) throw new ScepMessageError(`${name} is not printable`)
  return text
}

export interface OpenedRequest extends OpenedEnvelope {
  csr: CertificationRequest
}

/**
 * Decrypts the envelope of a PKCSReq/RenewalReq with the CA's key and verifies the CSR inside. Throws
 * ScepRequestError, to be answered as a CertRep FAILURE.
 */
export function openCertificationRequest(message: PkiMessage, ca: Recipient): OpenedRequest {
  const opened = openEnvelope(message.envelope, ca)
  return { ...opened, csr: parseCertificationRequest(opened.content) }
}
