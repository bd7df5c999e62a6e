/**
 * RSA key transport for CMS EnvelopedData (RFC 5652 section 6.2.1 with rsaEncryption, RFC 8017 7.2):
 * the content-encryption key is encrypted with RSAES-PKCS1-v1_5.
 *
 * Node 20 refuses PKCS#1 v1.5 *private decryption* (CVE-2023-46809), because a server that reveals
 * whether the padding was valid (by an error, or by how long it takes) is a Bleichenbacher/"Marvin"
 * decryption oracle. SCEP clients only speak PKCS#1 v1.5 here, so we do the raw RSA operation in OpenSSL
 * (`RSA_NO_PADDING`) and check the padding ourselves in constant time: every byte is examined on every
 * call, there is no branch on the padding bytes, and a bad padding yields a random key of the expected
 * length instead of an error (RFC 8017 7.2.2 note; RFC 5652 section 11.2 "MMA"). The caller then fails
 * in the symmetric step, exactly as it would with a valid padding around a wrong key.
 *
 * node-forge would do the unpadding too, but its RSA is pure JavaScript (measured: 23 ms per 2048-bit
 * decryption against 0.3 ms here) and it throws on bad padding, which is the oracle again.
 */
import { constants, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto'

/** Smallest padding: 0x00 0x02, at least 8 non-zero bytes, 0x00. */
const MIN_PADDING = 11

/**
 * Decrypts an RSAES-PKCS1-v1_5 encrypted key of exactly `keyLength` bytes. Never throws for a bad
 * ciphertext or padding; returns a random key instead (see the file comment).
 */
export function unwrapRsaKey(privateKey: KeyObject, encryptedKey: Uint8Array, keyLength: number): Buffer {
  const k = Math.ceil((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8)
  // Public facts (the key size and the content cipher), not secrets: fine to branch on.
  if (k < keyLength + MIN_PADDING) throw new RangeError('the RSA key is too small for this content key')
  const fallback = randomBytes(keyLength)
  let em: Buffer
  try {
    // Throws only for a ciphertext of the wrong length or not below the modulus: public properties.
    em = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, encryptedKey)
  } catch {
    return fallback
  }
  if (em.length !== k) return fallback
  return selectKey(em, keyLength, fallback)
}

/**
 * EM = 0x00 || 0x02 || PS || 0x00 || K, with PS non-zero bytes and K exactly `keyLength` bytes: the
 * separator position is fixed by the expected key length, so there is no search for it. Returns K when
 * the structure holds, `fallback` otherwise, choosing with a mask rather than a branch.
 */
export function selectKey(em: Uint8Array, keyLength: number, fallback: Uint8Array): Buffer {
  const k = em.length
  const sep = k - keyLength - 1
  let bad = em[0]! | (em[1]! ^ 0x02) | em[sep]!
  for (let i = 2; i < sep; i++) bad |= isZero(em[i]!)
  // 0xff when bad === 0, else 0x00 (bad is at most 0xff).
  const keep = ((bad - 1) >>> 8) & 0xff
  const out = Buffer.alloc(keyLength)
  for (let j = 0; j < keyLength; j++) out[j] = (em[sep + 1 + j]! & keep) | (fallback[j]! & ~keep & 0xff)
  return out
}

/** 1 when b === 0, else 0, for a byte b, without a branch. */
function isZero(b: number): number {
  return ((b - 1) >>> 8) & 1
}

/** Encrypts a content-encryption key to an RSA public key (public-key PKCS#1 v1.5 is allowed in Node). */
export function wrapRsaKey(publicKey: KeyObject, key: Uint8Array): Buffer {
  return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, key)
}
