/**
 * OAuth 1.0a request signing (RFC 5849) with HMAC-SHA1, as Apple's Device Assignment Services use it for
 * one request only: `GET /session`, which trades the server token for an `X-ADM-Auth-Session` (Apple,
 * "Authenticating for Automated Device Enrollment": "Sign the request using HMAC-SHA1, as described in
 * http://oauth.net/core/1.0a/#signing_process"; the example header carries realm="ADM", oauth_consumer_key,
 * oauth_token, oauth_signature_method, oauth_signature, oauth_timestamp, oauth_nonce and oauth_version).
 *
 * Pure: no I/O. The nonce and timestamp can be given (tests); by default 16 random bytes in hex and the
 * current second.
 */
import { createHmac, randomBytes } from 'node:crypto'

/** The four secrets of an ABM server token ("Examining server tokens"). */
export interface OAuthCredentials {
  consumerKey: string
  consumerSecret: string
  accessToken: string
  accessSecret: string
}

/** RFC 5849 section 3.6: every octet but the unreserved characters as %XX (uppercase), UTF-8 first. */
export function percentEncode(value: string): string {
  let out = ''
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/**
 * RFC 5849 section 3.4.1.2: scheme and host in lowercase, the port only when it is not the scheme's
 * default, the path; no query or fragment.
 */
export function baseStringUri(url: URL): string {
  const scheme = url.protocol.replace(/:$/, '').toLowerCase()
  const defaultPort = (scheme === 'http' && url.port === '80') || (scheme === 'https' && url.port === '443') || url.port === ''
  return `${scheme}://${url.hostname.toLowerCase()}${defaultPort ? '' : `:${url.port}`}${url.pathname || '/'}`
}

/**
 * RFC 5849 section 3.4.1: METHOD&base-uri&normalized-parameters, each part percent-encoded. The
 * parameters are the query's and the oauth_* protocol parameters (without realm and oauth_signature),
 * each name and value encoded, sorted by name then value, joined as name=value with `&`.
 */
export function signatureBaseString(method: string, url: URL, oauthParams: Record<string, string>): string {
  const pairs: [string, string][] = []
  for (const [k, v] of url.searchParams) pairs.push([percentEncode(k), percentEncode(v)])
  for (const [k, v] of Object.entries(oauthParams)) {
    if (k === 'realm' || k === 'oauth_signature') continue
    pairs.push([percentEncode(k), percentEncode(v)])
  }
  pairs.sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
  const normalized = pairs.map(([k, v]) => `${k}=${v}`).join('&')
  return [method.toUpperCase(), percentEncode(baseStringUri(url)), percentEncode(normalized)].join('&')
}

/** RFC 5849 section 3.4.2: HMAC-SHA1 keyed with encode(consumer secret)&encode(token secret), Base64. */
export function hmacSha1Signature(baseString: string, consumerSecret: string, tokenSecret: string): string {
  return createHmac('sha1', `${percentEncode(consumerSecret)}&${percentEncode(tokenSecret)}`).update(baseString, 'utf8').digest('base64')
}

export interface SignOptions {
  method: string
  url: string | URL
  credentials: OAuthCredentials
  /** Seconds since 1970; now by default. */
  timestamp?: number
  /** Unique for every request with the same timestamp; 16 random bytes in hex by default. */
  nonce?: string
  realm?: string
}

/** The `Authorization: OAuth ...` header value for one request (RFC 5849 section 3.5.1), on one line. */
export function oauthAuthorization(options: SignOptions): string {
  const url = typeof options.url === 'string' ? new URL(options.url) : options.url
  const params: Record<string, string> = {
    oauth_consumer_key: options.credentials.consumerKey,
    oauth_token: options.credentials.accessToken,
    oauth_signature_method: 'HMAC-SHA1',
    oauth_timestamp: String(options.timestamp ?? Math.floor(Date.now() / 1000)),
    oauth_nonce: options.nonce ?? randomBytes(16).toString('hex'),
    oauth_version: '1.0',
  }
  const signature = hmacSha1Signature(signatureBaseString(options.method, url, params), options.credentials.consumerSecret, options.credentials.accessSecret)
  const fields = [`realm="${percentEncode(options.realm ?? 'ADM')}"`]
  for (const [k, v] of Object.entries({ ...params, oauth_signature: signature })) fields.push(`${k}="${percentEncode(v)}"`)
  return `OAuth ${fields.join(', ')}`
}
