/**
 * node:crypto public keys from SubjectPublicKeyInfo DER (RFC 5280 4.1.2.7), fast. OpenSSL 3's generic
 * key decoder was measured at 0.2-0.35 ms per key; the same RSA or EC key built from its JWK form
 * (RFC 7518 section 6) takes about 0.03 ms. Only the canonical encodings take the fast path; anything
 * else goes to OpenSSL's decoder, so what is accepted does not change.
 */
import { createPublicKey, type KeyObject } from 'node:crypto'
import { contentOf, der, isUniversal, parseDer, rawOf, Tag, type Asn1Node } from './der.js'
import { OID } from './oids.js'

const RSA_ALGORITHM = der.sequence(der.oid(OID.rsaEncryption), der.null())

/** Named curves by OID: JWK name and coordinate size. */
const CURVES = new Map([
  ['1.2.840.10045.3.1.7', { crv: 'P-256', size: 32 }],
  ['1.3.132.0.34', { crv: 'P-384', size: 48 }],
  ['1.3.132.0.35', { crv: 'P-521', size: 66 }],
])
const EC_ALGORITHMS = new Map([...CURVES].map(([oid, curve]) => [der.sequence(der.oid(OID.ecPublicKey), der.oid(oid)).toString('hex'), curve]))

export function publicKeyFromSpki(spkiDer: Uint8Array): KeyObject {
  const jwk = canonicalJwk(spkiDer)
  if (jwk) return createPublicKey({ key: jwk, format: 'jwk' })
  return createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' })
}

/** The JWK for a canonically encoded RSA or EC (uncompressed point) SPKI; undefined for anything else. */
function canonicalJwk(spkiDer: Uint8Array): Record<string, string> | undefined {
  let spki: Asn1Node
  try {
    spki = parseDer(spkiDer, { maxDepth: 4, maxNodes: 16 })
  } catch {
    return undefined
  }
  const [alg, key] = spki.children
  if (!isUniversal(spki, Tag.SEQUENCE) || spki.children.length !== 2 || !alg || !key || !isUniversal(key, Tag.BIT_STRING)) return undefined
  const bits = contentOf(key)
  if (bits[0] !== 0) return undefined
  const algorithm = Buffer.from(rawOf(alg))
  if (algorithm.equals(RSA_ALGORITHM)) return rsaJwk(bits.subarray(1))
  const curve = EC_ALGORITHMS.get(algorithm.toString('hex'))
  const point = bits.subarray(1)
  if (!curve || point.length !== 1 + 2 * curve.size || point[0] !== 0x04) return undefined
  return { kty: 'EC', crv: curve.crv, x: b64url(point.subarray(1, 1 + curve.size)), y: b64url(point.subarray(1 + curve.size)) }
}

/** RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }, both positive and minimal. */
function rsaJwk(body: Uint8Array): Record<string, string> | undefined {
  let seq: Asn1Node
  try {
    seq = parseDer(body, { maxDepth: 2, maxNodes: 4 })
  } catch {
    return undefined
  }
  const [n, e] = seq.children
  if (!isUniversal(seq, Tag.SEQUENCE) || seq.children.length !== 2 || !n || !e) return undefined
  const modulus = positiveMinimal(n)
  const exponent = positiveMinimal(e)
  if (!modulus || !exponent) return undefined
  return { kty: 'RSA', n: b64url(modulus), e: b64url(exponent) }
}

/** The magnitude of a positive, minimally encoded INTEGER; undefined for zero, negative or padded ones. */
function positiveMinimal(node: Asn1Node): Uint8Array | undefined {
  if (!isUniversal(node, Tag.INTEGER) || node.constructed) return undefined
  const c = contentOf(node)
  if (c.length === 0 || c[0]! & 0x80) return undefined
  if (c[0] === 0) {
    if (c.length === 1 || !(c[1]! & 0x80)) return undefined
    return c.subarray(1)
  }
  return c
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url')
}

/** RSA public exponents in use: 65537 almost everywhere, 3 and 17 in some old keys. */
const STANDARD_RSA_EXPONENTS = new Set([3n, 17n, 65537n])
/** Verifying with a larger modulus costs more than any device or CA key needs. */
const MAX_RSA_MODULUS_BITS = 8192

/**
 * Why `key` must not be used to verify a signature from an untrusted party, or undefined when it may.
 * An RSA verification costs time in proportion to the exponent's size: a certificate with a 3071-bit
 * public exponent makes one check take ~20 ms, and a CMS full of them a CPU bomb (SECURITY.md row 24).
 * Real keys use a small standard exponent.
 */
export function verificationKeyRefusal(key: KeyObject): string | undefined {
  // Keys repeat with the certificates they come from (certificate.ts keeps those): decided once per key.
  const known = refusals.get(key)
  if (known !== undefined) return known || undefined
  const refusal = keyRefusal(key)
  refusals.set(key, refusal ?? '')
  return refusal
}

const refusals = new WeakMap<KeyObject, string>()

function keyRefusal(key: KeyObject): string | undefined {
  const details = key.asymmetricKeyDetails
  if (key.asymmetricKeyType === 'rsa') {
    if (details?.publicExponent === undefined || !STANDARD_RSA_EXPONENTS.has(details.publicExponent)) return 'an RSA key with a non-standard public exponent'
    if ((details.modulusLength ?? 0) > MAX_RSA_MODULUS_BITS) return `an RSA key larger than ${MAX_RSA_MODULUS_BITS} bits`
    return undefined
  }
  if (key.asymmetricKeyType === 'ec') return undefined
  return `a ${key.asymmetricKeyType} key`
}
