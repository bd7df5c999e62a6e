/**
 * CMS EnvelopedData (RFC 5652 section 6) as SCEP uses it (RFC 8894 section 3.2.2): the request's CSR is
 * enveloped to the CA, the CertRep's certificates to the requester. Key transport is RSA
 * (KeyTransRecipientInfo); content encryption is one of `CIPHERS`.
 */
import type { KeyObject, X509Certificate } from 'node:crypto'
import { certificateParts, type CertificateParts } from '../certificate.js'
import { identifiesCertificate, readCertificateIdentifier, type CertificateIdentifier } from '../cms.js'
import { Asn1Error, child, der, expectUniversal, isContext, isUniversal, octetsOf, oidOf, parseDer, Tag, type Asn1Node } from '../der.js'
import { OID } from '../oids.js'
import { cipherByOid, decryptContent, encryptContent, type ContentCipher } from './ciphers.js'
import { unwrapRsaKey, wrapRsaKey } from './key-transport.js'
import { ScepRequestError } from './types.js'

/** An envelope holds a CSR or a few certificates: shallow and small. */
const ENVELOPE_LIMITS = { maxDepth: 16, maxNodes: 2_000 }

export interface Recipient {
  certificate: X509Certificate
  privateKey: KeyObject
}

/** What sealing needs of a certificate: an X509Certificate, or one read by hand with its parts. */
export interface RecipientCertificate {
  raw: Buffer
  publicKey: KeyObject
  parts?: CertificateParts
}

export interface OpenedEnvelope {
  content: Buffer
  /** What the sender encrypted with, so the reply can use something the sender reads. */
  cipher: ContentCipher
}

interface KeyTransRecipient {
  rid: CertificateIdentifier
  keyEncryptionAlgorithm: string
  encryptedKey: Buffer
}

interface ParsedEnvelope {
  recipients: KeyTransRecipient[]
  contentType: string
  cipherOid: string
  iv: Buffer | undefined
  encryptedContent: Buffer
}

/**
 * Decrypts an EnvelopedData addressed to `recipient`. Every problem is a ScepRequestError: the caller
 * answers all of them with the same CertRep FAILURE, so a bad RSA padding is indistinguishable from a
 * bad CBC padding or an undecodable CSR (see key-transport.ts).
 */
export function openEnvelope(input: Uint8Array, recipient: Recipient): OpenedEnvelope {
  let parsed: ParsedEnvelope
  try {
    parsed = parseEnvelope(parseDer(input, ENVELOPE_LIMITS))
  } catch (err) {
    if (err instanceof ScepRequestError) throw err
    throw new ScepRequestError('badMessageCheck', `malformed EnvelopedData: ${(err as Error).message}`, { cause: err })
  }
  const ours = partsOf(recipient.certificate)
  const match = parsed.recipients.find((r) => identifiesCertificate(r.rid, ours))
  if (!match) throw new ScepRequestError('badMessageCheck', 'the envelope is not encrypted to this CA certificate')
  if (match.keyEncryptionAlgorithm !== OID.rsaEncryption) {
    throw new ScepRequestError('badAlg', `unsupported key encryption algorithm ${match.keyEncryptionAlgorithm}`)
  }
  const cipher = cipherByOid(parsed.cipherOid)
  if (!cipher) throw new ScepRequestError('badAlg', `unsupported content encryption algorithm ${parsed.cipherOid}`)
  if (parsed.contentType !== OID.data) throw new ScepRequestError('badMessageCheck', 'the envelope does not hold id-data')
  if (!parsed.iv || parsed.iv.length !== cipher.ivLength) throw new ScepRequestError('badMessageCheck', 'missing or wrong-sized IV')
  const block = cipher.ivLength
  if (parsed.encryptedContent.length === 0 || parsed.encryptedContent.length % block !== 0) {
    throw new ScepRequestError('badMessageCheck', 'encrypted content is not a whole number of cipher blocks')
  }
  const key = unwrapRsaKey(recipient.privateKey, match.encryptedKey, cipher.keyLength)
  try {
    return { content: decryptContent(cipher, key, parsed.iv, parsed.encryptedContent), cipher }
  } catch (err) {
    // Deliberately the same outcome whether the key was real or the random stand-in.
    throw new ScepRequestError('badMessageCheck', 'the envelope cannot be decrypted', { cause: err })
  }
}

function parseEnvelope(root: Asn1Node): ParsedEnvelope {
  expectUniversal(root, Tag.SEQUENCE, 'ContentInfo')
  if (oidOf(child(root, 0, 'ContentInfo')) !== OID.envelopedData) throw new Asn1Error('not a CMS EnvelopedData')
  const wrapper = child(root, 1, 'ContentInfo')
  if (!isContext(wrapper, 0)) throw new Asn1Error('ContentInfo content is not [0] EXPLICIT')
  const ed = expectUniversal(child(wrapper, 0, 'EnvelopedData'), Tag.SEQUENCE, 'EnvelopedData')
  let i = 1 // version
  if (ed.children[i] && isContext(ed.children[i]!, 0)) i++ // originatorInfo
  const riSet = expectUniversal(child(ed, i++, 'recipientInfos'), Tag.SET, 'recipientInfos')
  const eci = expectUniversal(child(ed, i, 'encryptedContentInfo'), Tag.SEQUENCE, 'EncryptedContentInfo')
  const recipients: KeyTransRecipient[] = []
  // Only KeyTransRecipientInfo (a plain SEQUENCE) can be ours; other kinds are [1]..[4] and skipped.
  for (const ri of riSet.children) if (isUniversal(ri, Tag.SEQUENCE)) recipients.push(parseKeyTrans(ri))
  const alg = expectUniversal(child(eci, 1, 'contentEncryptionAlgorithm'), Tag.SEQUENCE, 'AlgorithmIdentifier')
  const params = alg.children[1]
  const content = eci.children[2]
  if (!content || !isContext(content, 0)) throw new Asn1Error('EncryptedContentInfo has no encryptedContent')
  return {
    recipients,
    contentType: oidOf(child(eci, 0, 'EncryptedContentInfo')),
    cipherOid: oidOf(child(alg, 0, 'AlgorithmIdentifier')),
    iv: params && isUniversal(params, Tag.OCTET_STRING) ? octetsOf(params) : undefined,
    // [0] IMPLICIT OCTET STRING: primitive, or constructed segments in BER.
    encryptedContent: octetsOf(content),
  }
}

function parseKeyTrans(ri: Asn1Node): KeyTransRecipient {
  const rid = readCertificateIdentifier(child(ri, 1, 'KeyTransRecipientInfo'), 'RecipientIdentifier')
  const alg = expectUniversal(child(ri, 2, 'keyEncryptionAlgorithm'), Tag.SEQUENCE, 'AlgorithmIdentifier')
  const encryptedKey = octetsOf(expectUniversal(child(ri, 3, 'encryptedKey'), Tag.OCTET_STRING, 'encryptedKey'))
  return { rid, keyEncryptionAlgorithm: oidOf(child(alg, 0, 'AlgorithmIdentifier')), encryptedKey }
}

const partsCache = new WeakMap<RecipientCertificate, CertificateParts>()

/** Certificates on this path are the CA's and the requester's: parsed once per object. */
function partsOf(cert: RecipientCertificate): CertificateParts {
  if (cert.parts) return cert.parts
  let parts = partsCache.get(cert)
  if (!parts) {
    parts = certificateParts(cert.raw)
    partsCache.set(cert, parts)
  }
  return parts
}

/**
 * Envelopes `content` to `recipient` (an RSA certificate) with a fresh key for `cipher`. The recipient is
 * named by issuer and serial number, as RFC 8894 section 3.2.2 expects.
 */
export function sealEnvelope(content: Uint8Array, recipient: RecipientCertificate, cipher: ContentCipher): Buffer {
  const publicKey = recipient.publicKey
  if (publicKey.asymmetricKeyType !== 'rsa') {
    throw new ScepRequestError('badAlg', `cannot encrypt to a ${publicKey.asymmetricKeyType} key: only RSA key transport is supported`)
  }
  const parts = partsOf(recipient)
  const { key, iv, encrypted } = encryptContent(cipher, content)
  const recipientInfo = der.sequence(
    der.integer(0),
    der.sequence(parts.issuerDer, der.integer(parts.serialHex)),
    der.sequence(der.oid(OID.rsaEncryption), der.null()),
    der.octetString(wrapRsaKey(publicKey, key)),
  )
  const envelopedData = der.sequence(
    der.integer(0),
    der.set(recipientInfo),
    der.sequence(der.oid(OID.data), der.sequence(der.oid(cipher.oid), der.octetString(iv)), der.implicit(0, false, encrypted)),
  )
  return der.sequence(der.oid(OID.envelopedData), der.explicit(0, envelopedData))
}
