/**
 * The parts of an X.509 certificate (RFC 5280 section 4.1) that node:crypto does not expose: the raw
 * issuer and subject names (CMS identifies signers by issuer + serial) and extension values.
 */
import { X509Certificate, createHash, type KeyObject } from 'node:crypto'
import { OID } from './oids.js'
import { Asn1Error, child, contentOf, expectUniversal, integerHexOf, isContext, octetsOf, oidOf, parseDer, rawOf, Tag, type Asn1Node } from './der.js'
import { LruCache } from './lru.js'

export interface CertificateParts {
  serialHex: string
  issuerDer: Buffer
  subjectDer: Buffer
  spkiDer: Buffer
  /** Extension values (the OCTET STRING contents) by OID. */
  extensions: Map<string, { critical: boolean; value: Buffer }>
}

export function certificateParts(der: Uint8Array): CertificateParts {
  const cert = expectUniversal(parseDer(der), Tag.SEQUENCE, 'Certificate')
  const tbs = expectUniversal(child(cert, 0, 'Certificate'), Tag.SEQUENCE, 'TBSCertificate')
  let i = 0
  if (tbs.children[0] && isContext(tbs.children[0], 0)) i++ // [0] EXPLICIT version
  const serial = child(tbs, i, 'TBSCertificate')
  const issuer = expectUniversal(child(tbs, i + 2, 'TBSCertificate'), Tag.SEQUENCE, 'issuer')
  const subject = expectUniversal(child(tbs, i + 4, 'TBSCertificate'), Tag.SEQUENCE, 'subject')
  const spki = expectUniversal(child(tbs, i + 5, 'TBSCertificate'), Tag.SEQUENCE, 'subjectPublicKeyInfo')
  const extensions = new Map<string, { critical: boolean; value: Buffer }>()
  const extWrapper = tbs.children.slice(i + 6).find((n) => isContext(n, 3))
  if (extWrapper) {
    for (const ext of child(extWrapper, 0, 'extensions').children) {
      const id = oidOf(child(ext, 0, 'Extension'))
      const critical = ext.children.length === 3 && contentOf(ext.children[1]!)[0] === 0xff
      extensions.set(id, { critical, value: octetsOf(ext.children[ext.children.length - 1]!) })
    }
  }
  return {
    serialHex: integerHexOf(serial),
    issuerDer: Buffer.from(rawOf(issuer)),
    subjectDer: Buffer.from(rawOf(subject)),
    spkiDer: Buffer.from(rawOf(spki)),
    extensions,
  }
}

/** Extended key usage OIDs, or undefined when the certificate has no EKU extension (any use). */
export function extendedKeyUsages(parts: CertificateParts): string[] | undefined {
  const ext = parts.extensions.get(OID.extKeyUsage)
  if (!ext) return undefined
  const seq: Asn1Node = parseDer(ext.value)
  return seq.children.map(oidOf)
}

/**
 * Certificates repeat: a device signs every request with the same identity certificate. Parsing one
 * (node:crypto's X509Certificate, our DER walk, its public key) costs more than the rest of a check-in's
 * CPU, so the parsed object is kept by the SHA-256 of its DER (a pure function of the bytes: the same
 * bytes give the same certificate), least recently used first out, and what is derived from it is kept
 * beside it. Bounded, so a client sending new certificates only evicts.
 */
export const CERTIFICATE_CACHE_SIZE = 2048
const parsed = new LruCache<string, X509Certificate>(CERTIFICATE_CACHE_SIZE)
const derived = new WeakMap<X509Certificate, { fingerprint?: string; parts?: CertificateParts; publicKey?: KeyObject }>()

function derivedOf(cert: X509Certificate) {
  let d = derived.get(cert)
  if (!d) derived.set(cert, (d = {}))
  return d
}

/** Parses DER into a node:crypto certificate, with a protocol-level error on failure. */
export function parseCertificate(der: Uint8Array): X509Certificate {
  const key = createHash('sha256').update(der).digest('base64')
  const hit = parsed.get(key)
  if (hit) return hit
  let cert: X509Certificate
  try {
    cert = new X509Certificate(der)
  } catch (err) {
    throw new Asn1Error(`invalid certificate: ${(err as Error).message}`)
  }
  parsed.set(key, cert)
  return cert
}

/** `certificateFingerprint` of a parsed certificate, computed once. */
export function fingerprintOf(cert: X509Certificate): string {
  const d = derivedOf(cert)
  return (d.fingerprint ??= certificateFingerprint(cert.raw))
}

/** `certificateParts` of a parsed certificate, computed once (throws as certificateParts does). */
export function partsOf(cert: X509Certificate): CertificateParts {
  const d = derivedOf(cert)
  return (d.parts ??= certificateParts(cert.raw))
}

/** The certificate's public key, extracted once (throws as `cert.publicKey` does). */
export function publicKeyOf(cert: X509Certificate): KeyObject {
  const d = derivedOf(cert)
  return (d.publicKey ??= cert.publicKey)
}

/**
 * How issued certificates are identified (device_certificates.fingerprint_sha256): lowercase hex SHA-256
 * of the certificate's DER, 64 characters, no colons.
 */
export function certificateFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex')
}
