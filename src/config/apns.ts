/**
 * The APNs push identity from the environment: APNS_CERT + APNS_KEY (PEM text or file paths), or
 * APNS_P12 (a file path, or Base64 of the file) + APNS_P12_PASSWORD, the form Keychain exports. Read and
 * checked once at start: a wrong password, a key that does not match, or a certificate that is not an MDM
 * push certificate stops the server with one line naming the variable.
 *
 * APNS_CA adds trust roots for the APNs server certificate, on top of Node's bundled ones (which already
 * hold the root api.push.apple.com chains to): for an outbound proxy that re-signs TLS, or for tests
 * against a local APNs. It never replaces the bundled roots.
 */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { loadPushCredentials, PushCredentialsError, type PushCredentials } from '../push/credentials.js'
import type { Env } from './index.js'
import { pemBlocks, readPem } from './pem.js'
import { ConfigError } from './values.js'

export function readApnsCredentials(e: Env): PushCredentials | null {
  const pem = e.APNS_CERT ?? e.APNS_KEY
  if (pem && e.APNS_P12) throw new ConfigError('APNS_P12', 'set either APNS_CERT + APNS_KEY or APNS_P12 + APNS_P12_PASSWORD, not both')
  if (e.APNS_P12) return fromP12(e.APNS_P12, e.APNS_P12_PASSWORD ?? '')
  if (!pem) {
    if (e.APNS_P12_PASSWORD) throw new ConfigError('APNS_P12', 'required when APNS_P12_PASSWORD is set')
    return null
  }
  if (!e.APNS_CERT) throw new ConfigError('APNS_CERT', 'required when APNS_KEY is set (the MDM push certificate)')
  if (!e.APNS_KEY) throw new ConfigError('APNS_KEY', 'required when APNS_CERT is set (the push certificate\'s private key)')
  const certPem = readPem('APNS_CERT', e.APNS_CERT)
  const keyPem = readPem('APNS_KEY', e.APNS_KEY)
  return load('APNS_CERT', () => loadPushCredentials({ certPem, keyPem }))
}

function fromP12(value: string, password: string): PushCredentials {
  let bytes: Buffer
  try {
    bytes = readFileSync(value)
  } catch (err) {
    // Not a readable file: Base64 of the file (how secrets stores often hand files over).
    if (!/^[A-Za-z0-9+/=\s]{64,}$/.test(value)) {
      throw new ConfigError('APNS_P12', `cannot read ${value}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (give a path to the .p12 file or its Base64)`)
    }
    bytes = Buffer.from(value.replace(/\s+/g, ''), 'base64')
  }
  return load('APNS_P12', () => loadPushCredentials({ p12: new Uint8Array(bytes), password }))
}

function load(variable: string, fn: () => PushCredentials): PushCredentials {
  try {
    return fn()
  } catch (err) {
    if (err instanceof PushCredentialsError) {
      const where = err.problem === 'wrong_password' ? 'APNS_P12_PASSWORD' : err.problem === 'key_mismatch' || err.problem === 'no_private_key' ? (variable === 'APNS_P12' ? 'APNS_P12' : 'APNS_KEY') : variable
      throw new ConfigError(where, err.message)
    }
    throw err
  }
}

/** APNS_CA: the CERTIFICATE blocks of a PEM (text or path), or undefined when unset. */
export function readApnsCa(e: Env): string | undefined {
  if (!e.APNS_CA) return undefined
  const certificates = pemBlocks(readPem('APNS_CA', e.APNS_CA), /^CERTIFICATE$/)
  if (certificates.length === 0) throw new ConfigError('APNS_CA', 'contains no CERTIFICATE block')
  for (const pem of certificates) {
    try {
      new X509Certificate(pem)
    } catch (err) {
      throw new ConfigError('APNS_CA', `holds a certificate that cannot be read: ${(err as Error).message}`)
    }
  }
  return certificates.join('')
}
