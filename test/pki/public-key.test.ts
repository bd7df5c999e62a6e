import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { publicKeyFromSpki } from '../../src/pki/public-key.js'

const spkiOf = (key: ReturnType<typeof generateKeyPairSync>['publicKey']) => key.export({ type: 'spki', format: 'der' })

/** What OpenSSL's own decoder makes of the bytes: the key as SPKI again, or 'error'. */
function openssl(bytes: Uint8Array): string {
  try {
    return createPublicKey({ key: Buffer.from(bytes), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' }).toString('hex')
  } catch {
    return 'error'
  }
}

function ours(bytes: Uint8Array): string {
  try {
    return publicKeyFromSpki(bytes).export({ type: 'spki', format: 'der' }).toString('hex')
  } catch {
    return 'error'
  }
}

describe('publicKeyFromSpki', () => {
  const keys = [
    generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    generateKeyPairSync('rsa', { modulusLength: 1024, publicExponent: 3 }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey,
    generateKeyPairSync('ed25519').publicKey,
  ]

  it.each(keys.map((k) => [k.asymmetricKeyType, k.asymmetricKeyDetails?.namedCurve ?? k.asymmetricKeyDetails?.modulusLength ?? '', k] as const))(
    'gives the same key as OpenSSL for %s %s',
    (_type, _detail, key) => {
      const spki = spkiOf(key)
      expect(ours(spki)).toBe(spki.toString('hex'))
    },
  )

  it('accepts and refuses exactly what OpenSSL does for mutated keys', () => {
    const spkis = keys.map(spkiOf)
    fc.assert(
      fc.property(fc.nat(spkis.length - 1), fc.array(fc.tuple(fc.nat(600), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), (which, edits) => {
        const bytes = Buffer.from(spkis[which]!)
        for (const [at, value] of edits) bytes[at % bytes.length] = value
        expect(ours(bytes)).toBe(openssl(bytes))
      }),
      { numRuns: 500 },
    )
  })

  it('refuses an EC point that is not on the curve', () => {
    const spki = Buffer.from(spkiOf(keys[2]!))
    spki[spki.length - 1]! ^= 0x01
    expect(ours(spki)).toBe('error')
    expect(openssl(spki)).toBe('error')
  })
})
