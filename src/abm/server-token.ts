/**
 * The ABM server token file (`.p7m`) as Apple's portal hands it out (Apple, "Authenticating for Automated
 * Device Enrollment" and "Examining server tokens"): an S/MIME message (MIME headers `Content-Type:
 * application/pkcs7-mime; smime-type=enveloped-data`, `Content-Transfer-Encoding: base64`, a blank line,
 * then Base64) whose content is a CMS EnvelopedData encrypted to the certificate the administrator
 * uploaded to ABM (RSA key transport, AES-CBC in Apple's example). Decrypted, it is a MIME entity
 * (`Content-Type: text/plain;charset=UTF-8`) whose body holds the token JSON, in practice between
 * `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----` lines (public MDM servers strip both wrappers the
 * same way): consumer_key, consumer_secret, access_token, access_secret, access_token_expiry.
 *
 * Decryption reuses the SCEP envelope code (pki/scep/envelope.ts), whose RSA step works in Node 20
 * (which refuses PKCS#1 v1.5 private decryption) without becoming a padding oracle.
 */
import type { KeyObject, X509Certificate } from 'node:crypto'
import { BadRequestError } from '../errors.js'
import { openEnvelope } from '../pki/scep/envelope.js'
import type { OAuthCredentials } from './oauth1.js'

/** A server token is a few hundred bytes of JSON; its S/MIME file a few kilobytes. */
export const MAX_TOKEN_FILE_BYTES = 64 * 1024

export interface ServerToken extends OAuthCredentials {
  /** access_token_expiry. */
  expiresAt: Date
}

export class ServerTokenError extends BadRequestError {
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, { code, ...options })
  }
}

/** Reads and decrypts a `.p7m` server token with the ABM key. Throws ServerTokenError with a clear message. */
export function readServerToken(file: string | Uint8Array, recipient: { certificate: X509Certificate; privateKey: KeyObject }): ServerToken {
  const der = envelopeDer(file)
  let content: Buffer
  try {
    content = openEnvelope(der, recipient).content
  } catch (err) {
    const message = (err as Error).message
    if (/not encrypted to this CA certificate/.test(message)) {
      throw new ServerTokenError(
        'token_not_for_this_server',
        "The server token is encrypted to another certificate than this server's ABM certificate: in Apple Business Manager, upload the certificate from GET /api/v1/admin/abm/certificate to the MDM server (Upload Public Key / Edit MDM Server), then download a new token",
        { cause: err },
      )
    }
    throw new ServerTokenError('invalid_token', `The server token cannot be decrypted with this server's ABM key: ${message}`, { cause: err })
  }
  return parseTokenJson(content.toString('utf8'))
}

/** The EnvelopedData DER of a token file: S/MIME (headers + Base64), bare Base64, PEM, or DER. */
export function envelopeDer(file: string | Uint8Array): Buffer {
  const bytes = typeof file === 'string' ? Buffer.from(file, 'latin1') : Buffer.from(file)
  if (bytes.length === 0) throw new ServerTokenError('invalid_token', 'The server token file is empty')
  if (bytes.length > MAX_TOKEN_FILE_BYTES) throw new ServerTokenError('invalid_token', `The server token file is larger than ${MAX_TOKEN_FILE_BYTES} bytes: not an ABM server token`)
  if (bytes[0] === 0x30) return bytes
  let text = bytes.toString('latin1')
  const pem = /-----BEGIN (?:PKCS7|CMS)-----([\s\S]*?)-----END (?:PKCS7|CMS)-----/.exec(text)
  if (pem) text = pem[1]!
  else {
    const { headers, body } = splitMime(text)
    if (headers.size) {
      const type = headers.get('content-type') ?? ''
      if (!/^application\/(x-)?pkcs7-mime\b/i.test(type)) {
        throw new ServerTokenError('invalid_token', `The server token file is not an S/MIME message (Content-Type ${JSON.stringify(type.slice(0, 80))}); upload the .p7m file Apple Business Manager downloaded`)
      }
      const encoding = (headers.get('content-transfer-encoding') ?? 'base64').toLowerCase()
      if (encoding !== 'base64') throw new ServerTokenError('invalid_token', `The server token uses Content-Transfer-Encoding ${encoding}; expected base64`)
      text = body
    }
  }
  const compact = text.replace(/\s+/g, '')
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw new ServerTokenError('invalid_token', 'The server token file is neither an S/MIME message nor Base64: upload the .p7m file Apple Business Manager downloaded')
  return Buffer.from(compact, 'base64')
}

/** MIME headers (lowercase names, folded lines joined) up to the first blank line, and the rest. */
export function splitMime(text: string): { headers: Map<string, string>; body: string } {
  const normalized = text.replace(/\r\n/g, '\n')
  const end = normalized.indexOf('\n\n')
  const head = end < 0 ? '' : normalized.slice(0, end)
  const headers = new Map<string, string>()
  if (!/^[A-Za-z0-9-]+:/.test(head)) return { headers, body: normalized }
  let last: string | undefined
  for (const line of head.split('\n')) {
    if (/^[ \t]/.test(line) && last) {
      headers.set(last, `${headers.get(last)} ${line.trim()}`)
      continue
    }
    const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line)
    if (!m) return { headers: new Map(), body: normalized }
    last = m[1]!.toLowerCase()
    headers.set(last, m[2]!.trim())
  }
  return { headers, body: normalized.slice(end + 2) }
}

const TOKEN_VALUE = /^[\x21-\x7e]{1,1024}$/

/** The decrypted content: MIME headers, optional BEGIN/END MESSAGE lines, the token JSON. */
export function parseTokenJson(content: string): ServerToken {
  let body = splitMime(content).body
  const wrapped = /-----BEGIN MESSAGE-----([\s\S]*?)-----END MESSAGE-----/.exec(body)
  if (wrapped) body = wrapped[1]!
  let json: Record<string, unknown>
  try {
    json = parseJsonObject(body.trim())
  } catch (err) {
    throw new ServerTokenError('invalid_token', 'The decrypted server token holds no JSON object: this is not an ABM server token', { cause: err })
  }
  const field = (name: string): string => {
    const value = json[name]
    if (typeof value !== 'string' || !TOKEN_VALUE.test(value)) throw new ServerTokenError('invalid_token', `The server token has no valid ${name}`)
    return value
  }
  const credentials = { consumerKey: field('consumer_key'), consumerSecret: field('consumer_secret'), accessToken: field('access_token'), accessSecret: field('access_secret') }
  const expiry = field('access_token_expiry')
  const expiresAt = new Date(expiry)
  if (Number.isNaN(expiresAt.getTime())) throw new ServerTokenError('invalid_token', `The server token's access_token_expiry ${JSON.stringify(expiry)} is not a date`)
  return { ...credentials, expiresAt }
}

/** JSON, also when a mail-style line wrap cut it (Apple's own example is wrapped at 78 columns). */
function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    value = JSON.parse(text.replace(/\r?\n/g, ''))
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object')
  return value as Record<string, unknown>
}
