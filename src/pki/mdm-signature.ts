/**
 * Device identity on the check-in and command channels.
 *
 * With `SignMessage` true in the enrollment profile, every request carries `Mdm-Signature`: a Base64
 * detached CMS SignedData over the exact body bytes, signed with the identity certificate our SCEP CA
 * issued (https://developer.apple.com/documentation/devicemanagement/mdmsignature, PROTOCOL.md section 8).
 * Real devices send BER with indefinite lengths and SHA-1.
 *
 * Failures are 400 (cannot be read) or 403 (does not prove an identity), never 401: for some enrollment
 * types a 401 makes the device unenroll.
 */
import { createHash, type X509Certificate } from 'node:crypto'
import { BadRequestError, ForbiddenError } from '../errors.js'
import { extendedKeyUsages, parseCertificate, partsOf } from './certificate.js'
import { CmsError, parseSignedData, verifySingleSigner } from './cms.js'
import { LruCache } from './lru.js'
import { OID } from './oids.js'

/** A detached signature with a certificate chain fits easily; anything larger is not from a device. */
const MAX_SIGNATURE_BYTES = 16 * 1024

export class DeviceIdentityError extends ForbiddenError {
  constructor(message: string) {
    super(message, { code: 'device_identity_rejected' })
  }
}

function decodeBase64(value: string, what: string): Buffer {
  // What devices send: canonical, padded, one line. Node's decoder skips what is not Base64, so the bytes
  // encode back to the same text exactly when every character was read; anything else takes the strict
  // check below (white space, missing padding). One decode and one encode cost less than the regex.
  let bytes = Buffer.from(value, 'base64')
  if (!value || bytes.toString('base64') !== value) {
    const compact = value.replace(/\s+/g, '')
    if (!compact || compact.length % 4 === 1 || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) {
      throw new BadRequestError(`${what} is not valid Base64`, { code: 'invalid_signature' })
    }
    bytes = Buffer.from(compact, 'base64')
  }
  if (bytes.length > MAX_SIGNATURE_BYTES) throw new BadRequestError(`${what} is too large`, { code: 'invalid_signature' })
  return bytes
}

/**
 * Signatures verified before, by the SHA-256 of (header, body). Devices sign without signed attributes
 * (no signing time) with RSA PKCS #1 v1.5, which is deterministic (the recorded iOS 18 Idle in
 * test/fixtures): a device's Idle, the same body each time, carries the same header each time. Verifying
 * is a pure function of those bytes, so the answer is the one a full check would give; what can change
 * (revocation, the enrollment) is read from the database on every request after this. Only successes are
 * kept: anything else is checked in full each time.
 */
export const VERIFIED_SIGNATURE_CACHE_SIZE = 4096
const verified = new LruCache<string, X509Certificate>(VERIFIED_SIGNATURE_CACHE_SIZE)

/**
 * Verifies `Mdm-Signature` over `body` and returns the signer's certificate. Checks only that the
 * signature is valid for the certificate it names; `checkIssuedByCa` decides whether we trust it.
 * `once`: the body is not sent again (a command's result names its CommandUUID): it is checked without
 * the cache, where it would cost a hash of the body and push out an Idle's entry for nothing.
 */
export function verifyMdmSignature(header: string | undefined, body: Uint8Array, options: { once?: boolean } = {}): X509Certificate {
  if (!header) throw new BadRequestError('Mdm-Signature header is missing', { code: 'missing_signature' })
  if (options.once) return verifySignature(header, body)
  // The header's length first, so that no other split of the same bytes between header and body matches.
  const key = createHash('sha256').update(`${header.length}:`).update(header).update(body).digest('base64')
  const seen = verified.get(key)
  if (seen) return seen
  const certificate = verifySignature(header, body)
  verified.set(key, certificate)
  return certificate
}

function verifySignature(header: string, body: Uint8Array): X509Certificate {
  const der = decodeBase64(header, 'Mdm-Signature')
  let signed
  try {
    signed = parseSignedData(der)
  } catch (err) {
    throw new BadRequestError(`Mdm-Signature is not a CMS SignedData: ${(err as Error).message}`, { code: 'invalid_signature', cause: err })
  }
  if (signed.contentType !== OID.data) throw new DeviceIdentityError('Mdm-Signature signs an unexpected content type')
  try {
    return verifySingleSigner(signed, body).certificate
  } catch (err) {
    if (err instanceof CmsError) throw new DeviceIdentityError(`Mdm-Signature does not verify: ${err.message}`)
    throw err
  }
}

/**
 * Takes the client certificate a TLS-terminating proxy forwarded in a header: URL-encoded PEM (nginx
 * `$ssl_client_escaped_cert`), plain PEM, or Base64 DER.
 */
export function certificateFromProxyHeader(value: string | undefined): X509Certificate {
  if (!value) throw new BadRequestError('client certificate header is missing', { code: 'missing_client_certificate' })
  let text = value
  if (/%2D|%0A|%20/i.test(text)) {
    try {
      text = decodeURIComponent(text)
    } catch {
      throw new BadRequestError('client certificate header is not URL-encoded PEM', { code: 'invalid_client_certificate' })
    }
  }
  const pem = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(text)
  const der = decodeBase64(pem ? pem[1]! : text, 'client certificate')
  try {
    return parseCertificate(der)
  } catch {
    throw new BadRequestError('client certificate header does not hold a certificate', { code: 'invalid_client_certificate' })
  }
}

/**
 * The certificate must be issued by our SCEP CA (signature and issuer name), carry the clientAuth EKU
 * and be within its validity period.
 */
export function checkIssuedByCa(certificate: X509Certificate, ca: X509Certificate, now = new Date()): void {
  const refusal = issuanceRefusal(certificate, ca)
  if (refusal) throw new DeviceIdentityError(refusal)
  const t = now.getTime()
  if (t < Date.parse(certificate.validFrom) || t > Date.parse(certificate.validTo)) {
    throw new DeviceIdentityError('the signing certificate is not within its validity period')
  }
}

/** Issued by `ca` (name and signature) for client authentication: fixed for a pair, so decided once. */
const issuance = new WeakMap<X509Certificate, WeakMap<X509Certificate, string>>()

function issuanceRefusal(certificate: X509Certificate, ca: X509Certificate): string | undefined {
  let byCa = issuance.get(certificate)
  if (!byCa) issuance.set(certificate, (byCa = new WeakMap()))
  let refusal = byCa.get(ca)
  if (refusal === undefined) {
    refusal = decideIssuance(certificate, ca) ?? ''
    byCa.set(ca, refusal)
  }
  return refusal || undefined
}

function decideIssuance(certificate: X509Certificate, ca: X509Certificate): string | undefined {
  if (!certificate.checkIssued(ca) || !safeVerify(certificate, ca)) return 'the signing certificate was not issued by this server\'s CA'
  let ekus: string[] | undefined
  try {
    ekus = extendedKeyUsages(partsOf(certificate))
  } catch {
    return 'the signing certificate cannot be read'
  }
  if (!ekus?.includes(OID.clientAuth)) return 'the signing certificate is not for client authentication'
  return undefined
}

function safeVerify(certificate: X509Certificate, ca: X509Certificate): boolean {
  try {
    return certificate.verify(ca.publicKey)
  } catch {
    return false
  }
}
