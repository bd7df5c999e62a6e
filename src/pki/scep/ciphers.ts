/**
 * Content-encryption algorithms of SCEP envelopes (RFC 8894 section 3.5.2 capabilities "AES", "DES3";
 * single DES because clients still send it: micromdm's scepclient uses DES-CBC even when AES is offered).
 *
 * All run in OpenSSL through node:crypto. OpenSSL 3's default provider has no single DES, so DES-CBC runs
 * as DES-EDE3-CBC with the key repeated three times: E(K, D(K, E(K, x))) = E(K, x), the same cipher, and
 * no pure-JavaScript cipher on the request path.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { OID } from '../oids.js'

export type CipherName = 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | 'des-ede3-cbc' | 'des-cbc'

export interface ContentCipher {
  name: CipherName
  oid: string
  keyLength: number
  ivLength: number
}

export const CIPHERS: Record<CipherName, ContentCipher> = {
  'aes-128-cbc': { name: 'aes-128-cbc', oid: OID.aes128CBC, keyLength: 16, ivLength: 16 },
  'aes-192-cbc': { name: 'aes-192-cbc', oid: OID.aes192CBC, keyLength: 24, ivLength: 16 },
  'aes-256-cbc': { name: 'aes-256-cbc', oid: OID.aes256CBC, keyLength: 32, ivLength: 16 },
  'des-ede3-cbc': { name: 'des-ede3-cbc', oid: OID.desEDE3CBC, keyLength: 24, ivLength: 8 },
  'des-cbc': { name: 'des-cbc', oid: OID.desCBC, keyLength: 8, ivLength: 8 },
}

const BY_OID = new Map(Object.values(CIPHERS).map((c) => [c.oid, c]))

export function cipherByOid(oid: string): ContentCipher | undefined {
  return BY_OID.get(oid)
}

/** The OpenSSL cipher and key that compute `cipher` with `key`. */
function native(cipher: ContentCipher, key: Uint8Array): { name: string; key: Buffer } {
  if (cipher.name === 'des-cbc') return { name: 'des-ede3-cbc', key: Buffer.concat([key, key, key]) }
  return { name: cipher.name, key: Buffer.from(key) }
}

/** CBC with PKCS#7 padding (RFC 5652 section 6.3). Throws on a bad padding. */
export function decryptContent(cipher: ContentCipher, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const n = native(cipher, key)
  const decipher = createDecipheriv(n.name, n.key, iv)
  return Buffer.concat([decipher.update(data), decipher.final()])
}

export function encryptContent(cipher: ContentCipher, data: Uint8Array): { key: Buffer; iv: Buffer; encrypted: Buffer } {
  const key = randomBytes(cipher.keyLength)
  const iv = randomBytes(cipher.ivLength)
  const n = native(cipher, key)
  const c = createCipheriv(n.name, n.key, iv)
  return { key, iv, encrypted: Buffer.concat([c.update(data), c.final()]) }
}
