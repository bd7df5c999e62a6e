/**
 * Encryption of stored private keys: AES-256-GCM under a key derived from SERVER_SECRET with HKDF-SHA256.
 * The record name is bound as associated data, so a ciphertext cannot be moved to another record.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

export interface Sealed {
  ciphertext: Buffer
  nonce: Buffer
  tag: Buffer
}

export class SecretBox {
  private readonly key: Buffer

  constructor(serverSecret: string) {
    this.key = Buffer.from(hkdfSync('sha256', serverSecret, 'byod-mdm/key-material', 'aes-256-gcm v1', 32))
  }

  seal(name: string, plaintext: Buffer): Sealed {
    const nonce = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce)
    cipher.setAAD(Buffer.from(name, 'utf8'))
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
    return { ciphertext, nonce, tag: cipher.getAuthTag() }
  }

  /** Throws when the secret is not the one the record was sealed with, or the record was altered. */
  open(name: string, sealed: Sealed): Buffer {
    const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.nonce)
    decipher.setAAD(Buffer.from(name, 'utf8'))
    decipher.setAuthTag(sealed.tag)
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()])
  }
}
