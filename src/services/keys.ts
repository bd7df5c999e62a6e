/**
 * The server's own identities: the SCEP certificate authority and the profile-signing identity. Each is
 * either given by the administrator (config) or generated once and stored encrypted in the database, so
 * every process sharing the database uses the same keys. Generation is race-safe: two processes starting
 * together both generate, one insert wins, both use the winner.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import type { Config, PemIdentity } from '../config/index.js'
import { SecretBox } from '../pki/secretbox.js'
import type { Db } from '../storage/database.js'
import { findKeyMaterial, insertKeyMaterial } from '../storage/keys.js'
import type { KeyMaterial } from '../storage/types.js'
import { createSelfSigned, generateRsaKeyPair, type Identity } from '../pki/x509.js'

export interface ServerKeys {
  scepCa: Identity
  profileSigner: Identity
}

export type KeyName = keyof ServerKeys

const YEAR_MS = 365 * 24 * 3600 * 1000

export interface KeyLogger {
  info(obj: object, msg: string): void
}

export async function loadServerKeys(db: Db, config: Config, log?: KeyLogger): Promise<ServerKeys> {
  const box = new SecretBox(config.serverSecret)
  const load = (name: KeyName, given: PemIdentity | undefined, generate: () => Promise<Identity>) =>
    given ? fromPem(given) : loadOrGenerate(db, box, name, generate, log)

  const org = config.orgName
  const [scepCa, profileSigner] = await Promise.all([
    load('scepCa', config.keys.scepCa, async () => {
      const keys = await generateRsaKeyPair(2048)
      const notBefore = new Date(Date.now() - 3600_000)
      const certificate = await createSelfSigned({
        subject: [['CN', `${org} Device CA`], ['O', org]],
        keys,
        notBefore,
        notAfter: new Date(notBefore.getTime() + 10 * YEAR_MS),
        ca: true,
        // keyEncipherment: SCEP clients encrypt their request to this certificate.
        keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature', 'keyEncipherment'],
      })
      return { certificate, privateKey: keys.privateKey, chain: [] }
    }),
    load('profileSigner', config.keys.profileSigner, async () => {
      const keys = await generateRsaKeyPair(2048)
      const notBefore = new Date(Date.now() - 3600_000)
      const certificate = await createSelfSigned({
        subject: [['CN', `${org} Profile Signing`], ['O', org]],
        keys,
        notBefore,
        notAfter: new Date(notBefore.getTime() + 10 * YEAR_MS),
        keyUsage: ['digitalSignature'],
      })
      return { certificate, privateKey: keys.privateKey, chain: [] }
    }),
  ])
  return { scepCa, profileSigner }
}

/** An identity the administrator gave as PEM (config has already checked that the key matches). */
export function fromPem(given: PemIdentity): Identity {
  return {
    certificate: new X509Certificate(given.certificatePem),
    privateKey: createPrivateKey(given.keyPem),
    chain: given.chainPem.map((p) => new X509Certificate(p)),
  }
}

async function loadOrGenerate(
  db: Db,
  box: SecretBox,
  name: KeyName,
  generate: () => Promise<Identity>,
  log?: KeyLogger,
): Promise<Identity> {
  let row = await findKeyMaterial(db, name)
  if (!row) {
    const identity = await generate()
    const sealed = box.seal(name, identity.privateKey.export({ type: 'pkcs8', format: 'der' }))
    const inserted = await insertKeyMaterial(db, {
      name,
      certificatePem: identity.certificate.toString(),
      keyCiphertext: new Uint8Array(sealed.ciphertext),
      keyNonce: new Uint8Array(sealed.nonce),
      keyTag: new Uint8Array(sealed.tag),
    })
    if (inserted) {
      log?.info({ key: name, subject: identity.certificate.subject.replace(/\n/g, ', '), fingerprint256: identity.certificate.fingerprint256 }, 'generated key material')
    }
    row = await findKeyMaterial(db, name)
    if (!row) throw new Error(`the ${name} key was stored but cannot be read back`)
  }
  return openStored(box, name, row)
}

/** A stored key's certificate and its private key, decrypted with SERVER_SECRET. */
function openStored(box: SecretBox, name: KeyName, row: KeyMaterial): Identity {
  let der: Buffer
  try {
    der = box.open(name, { ciphertext: Buffer.from(row.keyCiphertext), nonce: Buffer.from(row.keyNonce), tag: Buffer.from(row.keyTag) })
  } catch (err) {
    throw new Error(
      `cannot decrypt the stored ${name} key: SERVER_SECRET differs from the one used when it was created`,
      { cause: err },
    )
  }
  return {
    certificate: new X509Certificate(row.certificatePem),
    privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }),
    chain: [],
  }
}

/**
 * One of the server's identities as the server would use it, without generating anything (npm run
 * doctor): from the configuration when given there, else from the database; null when neither has it
 * yet (the first start generates it). Throws when the stored key cannot be decrypted.
 */
export async function readServerKey(db: Db, config: Config, name: KeyName): Promise<{ identity: Identity; source: 'config' | 'database' } | null> {
  const given = config.keys[name]
  if (given) return { identity: fromPem(given), source: 'config' }
  const row = await findKeyMaterial(db, name)
  return row ? { identity: openStored(new SecretBox(config.serverSecret), name, row), source: 'database' } : null
}
