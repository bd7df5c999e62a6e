/**
 * Parsed certificates are kept by the SHA-256 of their DER (pki/certificate.ts): the same bytes give the
 * same object and what is derived from it once; other bytes never share it; the cache stays bounded.
 */
import { describe, expect, it } from 'vitest'
import { CERTIFICATE_CACHE_SIZE, certificateFingerprint, certificateParts, fingerprintOf, parseCertificate, partsOf } from '../../src/pki/certificate.js'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'

describe('parseCertificate', () => {
  it('gives the same certificate for the same bytes, and its fingerprint and parts as computed from them', async () => {
    const keys = await generateRsaKeyPair(2048)
    const cert = await createSelfSigned({ subject: [['CN', 'cache']], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
    const der = Buffer.from(cert.raw)
    const a = parseCertificate(der)
    const b = parseCertificate(Buffer.from(der))
    expect(b).toBe(a)
    expect(fingerprintOf(a)).toBe(certificateFingerprint(der))
    expect(partsOf(a)).toEqual(certificateParts(der))
    // One byte changed in the signature: other bytes, another object (or a refusal), never the cached one.
    const changed = Buffer.from(der)
    changed[changed.length - 1]! ^= 1
    expect(parseCertificate(changed)).not.toBe(a)
  })

  it('keeps at most CERTIFICATE_CACHE_SIZE certificates: the least recently used goes first', async () => {
    const keys = await generateRsaKeyPair(2048)
    const make = (i: number) => createSelfSigned({ subject: [['CN', `cache ${i}`]], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
    const first = Buffer.from((await make(-1)).raw)
    const kept = parseCertificate(first)
    const others = await Promise.all(Array.from({ length: CERTIFICATE_CACHE_SIZE }, (_, i) => make(i)))
    for (const c of others) parseCertificate(Buffer.from(c.raw))
    // `first` was the least recently used of CERTIFICATE_CACHE_SIZE + 1: parsed anew.
    expect(parseCertificate(first)).not.toBe(kept)
  }, 120_000)
})
