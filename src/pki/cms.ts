/**
 * CMS SignedData (RFC 5652 section 5): reading what devices send (enroll bodies, Mdm-Signature, SCEP
 * PKIOperation), verifying signatures with node:crypto, and signing what we send (profiles, SCEP CertRep).
 *
 * Verification here is cryptographic only: the signature matches the content and the named certificate.
 * Whether that certificate is trusted (Apple device CA, our SCEP CA, enrollment binding) is the caller's
 * decision, made with `signerCertificate` and its own policy.
 */
import { createHash, sign as cryptoSign, verify as cryptoVerify, constants, type KeyObject, type X509Certificate } from 'node:crypto'
import { promisify } from 'node:util'
import { parseCertificate, partsOf, publicKeyOf, type CertificateParts } from './certificate.js'
import {
  Asn1Error,
  child,
  der,
  expectUniversal,
  integerHexOf,
  integerOf,
  isContext,
  isUniversal,
  octetsOf,
  oidOf,
  parseDer,
  Tag,
  toDefiniteLength,
  type Asn1Node,
  type ParseLimits,
} from './der.js'
import { DIGEST_BY_OID, DIGEST_OID, OID, SIGNATURE_ALGORITHMS, type DigestName } from './oids.js'
import { verificationKeyRefusal } from './public-key.js'

export class CmsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CmsError'
  }
}

export interface SignedAttribute {
  oid: string
  /** Each value as its encoded ASN.1 element. */
  values: Asn1Node[]
}

export interface SignerInfo {
  version: number
  /** IssuerAndSerialNumber, or a subjectKeyIdentifier. */
  sid: CertificateIdentifier
  digest: DigestName
  /** The DER the signature covers when signed attributes are present (re-tagged as SET OF). */
  signedAttributesDer?: Buffer
  signedAttributes: SignedAttribute[]
  signatureAlgorithm: string
  signature: Buffer
}

export interface SignedData {
  /** eContentType, e.g. id-data. */
  contentType: string
  /** The encapsulated content; undefined for a detached signature. */
  content?: Buffer
  /** The carried certificates; empty when parsed with `parseCertificates: false`. */
  certificates: X509Certificate[]
  /** The carried certificates as DER, in the same order (always filled). */
  certificateDers: Buffer[]
  signers: SignerInfo[]
}

export interface SignedDataOptions {
  /**
   * false: leave `certificates` empty, for a caller that finds and reads the certificate it needs in
   * `certificateDers` itself. OpenSSL's certificate parse (X509Certificate) costs 0.1-0.3 ms each.
   */
  parseCertificates?: boolean
}

/** Limits for untrusted CMS: certificates nest about 10 deep, so 32 leaves room and stops abuse. */
const CMS_LIMITS: ParseLimits = { maxDepth: 32, maxNodes: 20_000 }

/**
 * Certificates a CMS from a device may carry: an enroll body has three (the device and two Apple CAs), a
 * Mdm-Signature or a SCEP request one or two. Every one is parsed by OpenSSL and may be tried as an
 * issuer, so the count is bounded before anything is parsed (SECURITY.md row 24).
 */
export const MAX_CMS_CERTIFICATES = 8

/** Parses a ContentInfo holding SignedData. Throws CmsError on anything malformed. */
export function parseSignedData(input: Uint8Array, limits: ParseLimits = CMS_LIMITS, options: SignedDataOptions = {}): SignedData {
  try {
    return readSignedData(parseDer(input, limits), options.parseCertificates ?? true)
  } catch (err) {
    if (err instanceof CmsError) throw err
    if (err instanceof Asn1Error) throw new CmsError(`malformed CMS: ${err.message}`, { cause: err })
    throw new CmsError(`malformed CMS: ${(err as Error).message}`, { cause: err })
  }
}

function readSignedData(root: Asn1Node, parseCertificates: boolean): SignedData {
  expectUniversal(root, Tag.SEQUENCE, 'ContentInfo')
  if (oidOf(child(root, 0, 'ContentInfo')) !== OID.signedData) throw new CmsError('not a CMS SignedData')
  const wrapper = child(root, 1, 'ContentInfo')
  if (!isContext(wrapper, 0)) throw new CmsError('ContentInfo content is not [0] EXPLICIT')
  const sd = expectUniversal(child(wrapper, 0, 'ContentInfo content'), Tag.SEQUENCE, 'SignedData')

  let i = 0
  integerOf(child(sd, i++, 'SignedData version'))
  expectUniversal(child(sd, i++, 'SignedData digestAlgorithms'), Tag.SET, 'digestAlgorithms')
  const encap = expectUniversal(child(sd, i++, 'SignedData'), Tag.SEQUENCE, 'EncapsulatedContentInfo')
  const contentType = oidOf(child(encap, 0, 'EncapsulatedContentInfo'))
  let content: Buffer | undefined
  if (encap.children[1]) {
    if (!isContext(encap.children[1], 0)) throw new CmsError('eContent is not [0] EXPLICIT')
    content = octetsOf(expectUniversal(child(encap.children[1], 0, 'eContent'), Tag.OCTET_STRING, 'eContent'))
  }

  const certificateDers: Buffer[] = []
  let next = sd.children[i]
  if (next && isContext(next, 0)) {
    if (next.children.length > MAX_CMS_CERTIFICATES) throw new CmsError(`the CMS carries ${next.children.length} certificates; at most ${MAX_CMS_CERTIFICATES} are accepted`)
    for (const c of next.children) {
      // Only plain certificates (SEQUENCE); other CertificateChoices are ignored.
      if (isUniversal(c, Tag.SEQUENCE)) certificateDers.push(toDefiniteLength(c))
    }
    next = sd.children[++i]
  }
  const certificates = parseCertificates ? certificateDers.map((d) => parseCertificate(d)) : []
  if (next && isContext(next, 1)) next = sd.children[++i] // CRLs: not used
  const signerSet = expectUniversal(next, Tag.SET, 'signerInfos')
  if (sd.children.length > i + 1) throw new CmsError('unexpected elements after signerInfos')
  const signers = signerSet.children.map(readSignerInfo)
  return { contentType, content, certificates, certificateDers, signers }
}

function readSignerInfo(node: Asn1Node): SignerInfo {
  expectUniversal(node, Tag.SEQUENCE, 'SignerInfo')
  let i = 0
  const version = integerOf(child(node, i++, 'SignerInfo version'))
  const sid = readCertificateIdentifier(child(node, i++, 'SignerInfo sid'), 'SignerIdentifier')
  const digestOid = oidOf(child(child(node, i++, 'SignerInfo digestAlgorithm'), 0, 'AlgorithmIdentifier'))
  const digest = DIGEST_BY_OID[digestOid]
  if (!digest) throw new CmsError(`unsupported digest algorithm ${digestOid}`)

  let signedAttributesDer: Buffer | undefined
  const signedAttributes: SignedAttribute[] = []
  let n = child(node, i, 'SignerInfo')
  if (isContext(n, 0)) {
    // The signature covers the DER of the attributes with the SET OF tag, not the [0] IMPLICIT tag.
    const definite = toDefiniteLength(n)
    signedAttributesDer = Buffer.concat([Buffer.from([0x31]), definite.subarray(1)])
    for (const attr of n.children) {
      expectUniversal(attr, Tag.SEQUENCE, 'Attribute')
      const oid = oidOf(child(attr, 0, 'Attribute'))
      if (signedAttributes.some((a) => a.oid === oid)) throw new CmsError(`signed attribute ${oid} appears twice`)
      signedAttributes.push({ oid, values: expectUniversal(child(attr, 1, 'Attribute values'), Tag.SET, 'AttributeValues').children })
    }
    n = child(node, ++i, 'SignerInfo')
  }
  const signatureAlgorithm = oidOf(child(n, 0, 'signatureAlgorithm'))
  const signature = octetsOf(expectUniversal(child(node, ++i, 'SignerInfo signature'), Tag.OCTET_STRING, 'signature'))
  return { version, sid, digest, signedAttributesDer, signedAttributes, signatureAlgorithm, signature }
}

/** The single value of a signed attribute, or undefined when absent. Throws when multi-valued. */
export function signedAttributeValue(signer: SignerInfo, oid: string): Asn1Node | undefined {
  const attr = signer.signedAttributes.find((a) => a.oid === oid)
  if (!attr) return undefined
  if (attr.values.length !== 1) throw new CmsError(`signed attribute ${oid} must have exactly one value`)
  return attr.values[0]
}

/**
 * SignerIdentifier and RecipientIdentifier (RFC 5652 sections 5.3 and 6.2.1): a certificate named by
 * issuer and serial number, or by [0] subjectKeyIdentifier.
 */
export type CertificateIdentifier = { issuerDer: Buffer; serialHex: string } | { subjectKeyIdentifier: Buffer }

export function readCertificateIdentifier(node: Asn1Node, what: string): CertificateIdentifier {
  if (isUniversal(node, Tag.SEQUENCE)) {
    const issuer = expectUniversal(child(node, 0, 'IssuerAndSerialNumber'), Tag.SEQUENCE, 'issuer')
    return { issuerDer: toDefiniteLength(issuer), serialHex: integerHexOf(child(node, 1, 'IssuerAndSerialNumber')) }
  }
  if (isContext(node, 0)) return { subjectKeyIdentifier: octetsOf(node) }
  throw new CmsError(`unknown ${what}`)
}

/** Whether `id` names the certificate with these parts. */
export function identifiesCertificate(id: CertificateIdentifier, parts: CertificateParts): boolean {
  if ('serialHex' in id) return parts.serialHex === id.serialHex && parts.issuerDer.equals(id.issuerDer)
  const ski = parts.extensions.get(OID.subjectKeyIdentifier)
  return Boolean(ski && skiOrUndefined(ski.value)?.equals(id.subjectKeyIdentifier))
}

/** Finds the certificate the SignerInfo names among `certificates`. */
export function signerCertificate(signer: SignerInfo, certificates: X509Certificate[]): X509Certificate | undefined {
  for (const cert of certificates) {
    let parts
    try {
      parts = partsOf(cert)
    } catch (err) {
      throw new CmsError(`unreadable certificate in CMS: ${(err as Error).message}`, { cause: err })
    }
    if (identifiesCertificate(signer.sid, parts)) return cert
  }
  return undefined
}

/**
 * Verifies one signer's signature over `content` with `publicKey` (from the signer's certificate).
 * With signed attributes: messageDigest must equal the digest of the content and contentType must match.
 * Throws CmsError when the signature does not hold.
 */
export function verifySigner(signer: SignerInfo, content: Uint8Array, publicKey: KeyObject, contentType: string = OID.data): void {
  const alg = SIGNATURE_ALGORITHMS[signer.signatureAlgorithm]
  if (!alg) throw new CmsError(`unsupported signature algorithm ${signer.signatureAlgorithm}`)
  const unusable = verificationKeyRefusal(publicKey)
  if (unusable) throw new CmsError(`the signer certificate has ${unusable}`)
  if (alg.key !== publicKey.asymmetricKeyType) throw new CmsError(`signature algorithm does not match the ${publicKey.asymmetricKeyType} key`)
  const hash = alg.digest ?? signer.digest
  let signed: Uint8Array = content
  if (signer.signedAttributesDer) {
    const md = signedAttributeValue(signer, OID.messageDigest)
    if (!md || !isUniversal(md, Tag.OCTET_STRING)) throw new CmsError('signed attributes lack messageDigest')
    const expected = createHash(signer.digest).update(content).digest()
    if (!attributeValue('messageDigest', () => octetsOf(md)).equals(expected)) throw new CmsError('messageDigest does not match the content')
    const ct = signedAttributeValue(signer, OID.contentType)
    if (ct && attributeValue('contentType', () => oidOf(ct)) !== contentType) throw new CmsError('contentType attribute does not match the content type')
    signed = signer.signedAttributesDer
  }
  let ok = false
  try {
    ok =
      alg.key === 'rsa'
        ? cryptoVerify(hash, signed, { key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signer.signature)
        : cryptoVerify(hash, signed, { key: publicKey, dsaEncoding: 'der' }, signer.signature)
  } catch (err) {
    throw new CmsError(`signature check failed: ${(err as Error).message}`, { cause: err })
  }
  if (!ok) throw new CmsError('signature does not verify')
}

/** Attribute values are decoded lazily, after parsing: a malformed one is a CmsError like any other. */
function attributeValue<T>(name: string, read: () => T): T {
  try {
    return read()
  } catch (err) {
    if (err instanceof Asn1Error) throw new CmsError(`malformed ${name} attribute: ${err.message}`, { cause: err })
    throw err
  }
}

/** A certificate's subjectKeyIdentifier; undefined when the extension cannot be read. */
function skiOrUndefined(extensionValue: Buffer): Buffer | undefined {
  try {
    return octetsOf(parseDer(extensionValue))
  } catch {
    return undefined
  }
}

export interface VerifiedSignature {
  signer: SignerInfo
  certificate: X509Certificate
  content: Buffer
}

/**
 * The common case: exactly one signer, its certificate carried in the CMS, signature valid over the
 * encapsulated content (or `detachedContent`).
 */
export function verifySingleSigner(signed: SignedData, detachedContent?: Uint8Array): VerifiedSignature {
  if (signed.signers.length !== 1) throw new CmsError(`expected exactly one signer, found ${signed.signers.length}`)
  const signer = signed.signers[0]!
  const content = detachedContent !== undefined ? Buffer.from(detachedContent) : signed.content
  if (content === undefined) throw new CmsError('no content to verify (detached signature without a body)')
  if (detachedContent !== undefined && signed.content !== undefined && !signed.content.equals(content)) {
    throw new CmsError('the signature encapsulates different content')
  }
  const certificate = signerCertificate(signer, signed.certificates)
  if (!certificate) throw new CmsError('the signer certificate is not included')
  let publicKey: KeyObject
  try {
    publicKey = publicKeyOf(certificate)
  } catch (err) {
    throw new CmsError(`the signer certificate has an unusable public key: ${(err as Error).message}`, { cause: err })
  }
  verifySigner(signer, content, publicKey, signed.contentType)
  return { signer, certificate, content }
}

// ---------------------------------------------------------------------------------------------------
// Signing

export interface SignOptions {
  content: Uint8Array
  certificate: X509Certificate
  privateKey: KeyObject
  /** More certificates to include (intermediates, a CA). The signer's own is always included. */
  extraCertificates?: X509Certificate[]
  digest?: DigestName
  /** Leave the content out (a detached signature). */
  detached?: boolean
  /** eContentType; id-data by default. */
  contentType?: string
  /** Extra signed attributes, each an OID with its encoded values (SCEP messageType, nonces, ...). */
  signedAttributes?: { oid: string; values: Uint8Array[] }[]
  signingTime?: Date
}

/** Produces a DER ContentInfo with SignedData, one signer, DER-sorted signed attributes. */
export function signCms(options: SignOptions): Buffer {
  const p = prepareSignature(options)
  return p.finish(cryptoSign(p.digest, p.signedAttributes, p.key))
}

/**
 * `signCms` with the private-key operation in libuv's thread pool instead of on the event loop: for
 * signing on every request (SCEP CertRep), where a synchronous RSA signature would stall all others.
 */
export async function signCmsAsync(options: SignOptions): Promise<Buffer> {
  const p = prepareSignature(options)
  return p.finish(await signAsync(p.digest, p.signedAttributes, p.key))
}

const signAsync = promisify(cryptoSign)

const signerParts = new WeakMap<X509Certificate, CertificateParts>()

function prepareSignature(options: SignOptions) {
  const digest = options.digest ?? 'sha256'
  const contentType = options.contentType ?? OID.data
  // A server signs with the same certificate object over and over: parse it once.
  let parts = signerParts.get(options.certificate)
  if (!parts) {
    parts = partsOf(options.certificate)
    signerParts.set(options.certificate, parts)
  }
  const attribute = (oid: string, values: Uint8Array[]) => der.sequence(der.oid(oid), der.setOf(values))
  const attributes = [
    attribute(OID.contentType, [der.oid(contentType)]),
    attribute(OID.signingTime, [der.utcTime(options.signingTime ?? new Date())]),
    attribute(OID.messageDigest, [der.octetString(createHash(digest).update(options.content).digest())]),
    ...(options.signedAttributes ?? []).map((a) => attribute(a.oid, a.values)),
  ]
  // DER SET OF: sorted by encoding. Some SCEP clients re-encode before verifying, so this matters.
  const sorted = [...attributes].sort((a, b) => Buffer.compare(a, b))
  const keyType = options.privateKey.asymmetricKeyType
  const key =
    keyType === 'rsa'
      ? { key: options.privateKey, padding: constants.RSA_PKCS1_PADDING }
      : { key: options.privateKey, dsaEncoding: 'der' as const }
  const finish = (signature: Buffer): Buffer => {
    const signatureAlgorithm =
      keyType === 'rsa' ? der.sequence(der.oid(OID.rsaEncryption), der.null()) : der.sequence(der.oid(ecdsaOid(digest)))
    const digestAlgorithm = der.sequence(der.oid(DIGEST_OID[digest]), der.null())
    const signerInfo = der.sequence(
      der.integer(1),
      der.sequence(parts.issuerDer, der.integer(parts.serialHex)),
      digestAlgorithm,
      // [0] IMPLICIT SET OF Attribute: same content, context tag.
      der.implicit(0, true, Buffer.concat(sorted)),
      signatureAlgorithm,
      der.octetString(signature),
    )
    const certs = [options.certificate, ...(options.extraCertificates ?? [])]
    const signedData = der.sequence(
      der.integer(1),
      der.set(digestAlgorithm),
      der.sequence(der.oid(contentType), ...(options.detached ? [] : [der.explicit(0, der.octetString(options.content))])),
      der.implicit(0, true, Buffer.concat(certs.map((c) => c.raw))),
      der.set(signerInfo),
    )
    return der.sequence(der.oid(OID.signedData), der.explicit(0, signedData))
  }
  return { digest, signedAttributes: der.set(...sorted), key, finish }
}

function ecdsaOid(digest: DigestName): string {
  return { sha1: OID.ecdsaWithSHA1, sha256: OID.ecdsaWithSHA256, sha384: OID.ecdsaWithSHA384, sha512: OID.ecdsaWithSHA512 }[digest]
}

