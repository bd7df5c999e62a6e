/**
 * Who signed an enroll request (PROTOCOL.md section 2). The device POSTs an attached CMS SignedData
 * (BER, SHA-1 in every capture) signed with its Apple-issued device identity, carrying the chain
 * device -> "Apple iPhone Device CA" -> "Apple iPhone Certification Authority" (macOS sends only the
 * first two). This module checks the signature over the content (pki/cms.ts), then walks the chain:
 * each certificate must be signed by the next, and the walk must reach a pinned Apple key. Validity dates
 * are not checked: Apple's device CAs expired years ago and devices still chain to them.
 *
 * Apple Root CA is pinned too, but only as the signer of "Apple iPhone Certification Authority": the
 * same root signs the developer CAs (WWDR), whose leaf certificates anyone with a developer account holds,
 * so "chains to Apple Root CA" alone would prove nothing about being a device. Names are trustworthy here
 * because the certificate carrying them was verified against Apple's key.
 *
 * Even a trusted signature only says "some Apple device built this request"; the user is authenticated
 * by the sign-in, not by this check.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { APPLE_IPHONE_CERTIFICATION_AUTHORITY_PEM, APPLE_IPHONE_DEVICE_CA_PEM, APPLE_ROOT_CA_PEM } from './apple-ca.js'
import { certificateParts } from './certificate.js'
import { CmsError, parseSignedData, verifySingleSigner } from './cms.js'
import { contentOf, isContext, octetsOf, parseDer } from './der.js'
import { OID } from './oids.js'
import { verificationKeyRefusal } from './public-key.js'

export interface TrustAnchor {
  name: string
  certificate: X509Certificate
  /** A certificate carrying this very key (SPKI SHA-256) is trusted. */
  pinned: boolean
  /** Certificates this key signed are trusted only when their subject CN matches; any when undefined. */
  issues?: RegExp
}

export const APPLE_DEVICE_ANCHORS: readonly TrustAnchor[] = [
  { name: 'Apple iPhone Device CA', certificate: new X509Certificate(APPLE_IPHONE_DEVICE_CA_PEM), pinned: true },
  { name: 'Apple iPhone Certification Authority', certificate: new X509Certificate(APPLE_IPHONE_CERTIFICATION_AUTHORITY_PEM), pinned: true },
  { name: 'Apple Root CA', certificate: new X509Certificate(APPLE_ROOT_CA_PEM), pinned: false, issues: /^Apple iPhone Certification Authority$/ },
]

/** Longest chain walked; real ones have three certificates. */
const MAX_CHAIN = 6

export interface ChainTrust {
  /** The signer first, then each issuer found, as far as the chain went. */
  chain: X509Certificate[]
  /** The pinned key that vouched for the chain; undefined when none did. */
  anchor?: string
  /** Why the chain does not reach a pinned Apple device key; undefined when it does. */
  untrustedReason?: string
}

export interface DeviceSignature extends ChainTrust {
  /** The signed content (the enroll request plist). */
  content: Buffer
  signer: X509Certificate
}

/**
 * Parses and verifies an enroll request body. Throws CmsError when it is not a SignedData with exactly
 * one signer whose signature over the attached content holds; otherwise returns the content and whether
 * the signer chains to Apple (`untrustedReason` says why not).
 */
export function verifyDeviceSignature(body: Uint8Array, anchors: readonly TrustAnchor[] = APPLE_DEVICE_ANCHORS): DeviceSignature {
  const signed = parseSignedData(body)
  if (signed.contentType !== OID.data) throw new CmsError('the enroll request does not sign id-data content')
  if (signed.content === undefined) throw new CmsError('the enroll request carries no content (detached signature)')
  const { certificate, content } = verifySingleSigner(signed)
  return { content, signer: certificate, ...chainToAnchor(certificate, signed.certificates, anchors) }
}

/**
 * Issuer candidates tried per step. A CMS has at most MAX_CMS_CERTIFICATES certificates, and a real
 * chain offers one issuer per step; decoys that share a name (SECURITY.md row 24) get no more tries.
 */
const MAX_CANDIDATES = 2

/**
 * Walks from `leaf` through `pool` (the certificates in the CMS) until a pinned key vouches for it.
 * Signatures are checked only toward pinned issuers: an anchor, or a carried certificate that names
 * itself the issuer (subject and key identifier) and whose own issuer is an anchor or another carried
 * certificate by name. Keys with non-standard RSA exponents are never tried (verificationKeyRefusal).
 */
export function chainToAnchor(leaf: X509Certificate, pool: readonly X509Certificate[], anchors: readonly TrustAnchor[]): ChainTrust {
  const chain = [leaf]
  const names = new Set([...anchors.map((a) => a.certificate.subject), ...pool.map((c) => c.subject)])
  for (let cert = leaf; ; ) {
    const spki = spkiSha256(cert)
    const pinned = anchors.find((a) => a.pinned && spkiSha256(a.certificate) === spki)
    if (pinned) return { chain, anchor: pinned.name }

    const signer = anchors.find((a) => issuedBy(cert, a.certificate))
    if (signer) {
      if (!signer.issues || signer.issues.test(commonName(cert))) return { chain, anchor: signer.name }
      return { chain, untrustedReason: `"${commonName(cert)}" is signed by ${signer.name} but is not an Apple device CA` }
    }

    if (chain.length >= MAX_CHAIN) return { chain, untrustedReason: `no pinned Apple key within ${MAX_CHAIN} certificates` }
    const seen = new Set(chain.map((c) => c.fingerprint256))
    const candidates = pool.filter((c) => !seen.has(c.fingerprint256) && c.subject === cert.issuer && names.has(c.issuer) && keyIdentifiersAgree(cert, c))
    const issuer = candidates.slice(0, MAX_CANDIDATES).find((c) => issuedBy(cert, c))
    if (!issuer) {
      return { chain, untrustedReason: `the chain ends at "${commonName(cert)}" (issuer "${commonName(cert, 'issuer')}"), which no pinned Apple device key signed` }
    }
    chain.push(issuer)
    cert = issuer
  }
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  if (cert.issuer !== issuer.subject) return false
  try {
    if (verificationKeyRefusal(issuer.publicKey)) return false
    return cert.verify(issuer.publicKey)
  } catch {
    return false
  }
}

/** False when `cert`'s authorityKeyIdentifier and `issuer`'s subjectKeyIdentifier are both present and differ. */
function keyIdentifiersAgree(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    const aki = authorityKeyId(certificateParts(cert.raw).extensions.get(OID.authorityKeyIdentifier)?.value)
    const skiValue = certificateParts(issuer.raw).extensions.get(OID.subjectKeyIdentifier)?.value
    if (!aki || !skiValue) return true
    return octetsOf(parseDer(skiValue)).equals(aki)
  } catch {
    return false
  }
}

/** AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL, ... } */
function authorityKeyId(value: Buffer | undefined): Buffer | undefined {
  if (!value) return undefined
  const first = parseDer(value).children[0]
  return first && isContext(first, 0) ? Buffer.from(contentOf(first)) : undefined
}

function spkiSha256(cert: X509Certificate): string {
  return createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex')
}

/** The CN of a certificate's subject or issuer, for policy and log messages (bounded: it is sender data). */
export function commonName(cert: X509Certificate, which: 'subject' | 'issuer' = 'subject'): string {
  const line = cert[which].split('\n').find((l) => l.startsWith('CN='))
  return (line?.slice(3) ?? cert[which].replace(/\n/g, ', ')).slice(0, 200)
}
