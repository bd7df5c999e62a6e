/** PEM values in the environment: inline text or a path to a file, checked once at start-up. */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ConfigError, type Environment } from './values.js'

/** A certificate and private key given by the administrator (PEM text). */
export interface PemIdentity {
  certificatePem: string
  keyPem: string
  /** Intermediate certificates to send along, PEM, possibly empty. */
  chainPem: string[]
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g

/** Resolves a "PEM text or path to a PEM file" variable to PEM text. */
export function readPem(variable: string, value: string): string {
  let text = value
  if (!value.includes('-----BEGIN')) {
    try {
      text = readFileSync(value, 'utf8')
    } catch (err) {
      throw new ConfigError(variable, `cannot read PEM file ${value}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  // Inline PEM in env files often has literal "\n" sequences instead of newlines.
  text = text.replace(/\\n/g, '\n')
  if (!PEM_BLOCK.test(text)) throw new ConfigError(variable, 'does not contain a PEM block')
  PEM_BLOCK.lastIndex = 0
  return text
}

export function pemBlocks(text: string, kind: RegExp): string[] {
  return [...text.matchAll(PEM_BLOCK)].filter((m) => kind.test(m[1]!)).map((m) => `${m[0]}\n`)
}

export function readIdentity(env: Environment, certVar: string, keyVar: string, chainVar?: string): PemIdentity | undefined {
  const certValue = env[certVar] || undefined
  const keyValue = env[keyVar] || undefined
  if (!certValue && !keyValue) return undefined
  if (!certValue) throw new ConfigError(certVar, `required when ${keyVar} is set`)
  if (!keyValue) throw new ConfigError(keyVar, `required when ${certVar} is set`)
  const certs = pemBlocks(readPem(certVar, certValue), /^CERTIFICATE$/)
  if (certs.length === 0) throw new ConfigError(certVar, 'contains no CERTIFICATE block')
  const keys = pemBlocks(readPem(keyVar, keyValue), /PRIVATE KEY$/)
  if (keys.length !== 1) throw new ConfigError(keyVar, 'must contain exactly one PRIVATE KEY block')
  const chainValue = chainVar ? env[chainVar] || undefined : undefined
  const chainPem = [...certs.slice(1), ...(chainValue ? pemBlocks(readPem(chainVar!, chainValue), /^CERTIFICATE$/) : [])]
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(certs[0]!)
  } catch (err) {
    throw new ConfigError(certVar, `is not a valid certificate: ${(err as Error).message}`)
  }
  let key
  try {
    key = createPrivateKey(keys[0]!)
  } catch (err) {
    throw new ConfigError(keyVar, `is not a valid unencrypted private key: ${(err as Error).message}`)
  }
  if (!certificate.checkPrivateKey(key)) throw new ConfigError(keyVar, `does not match the certificate in ${certVar}`)
  if (key.asymmetricKeyType !== 'rsa') throw new ConfigError(keyVar, 'must be an RSA key (Apple devices and SCEP clients expect RSA)')
  return { certificatePem: certs[0]!, keyPem: keys[0]!, chainPem }
}
