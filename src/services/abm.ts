/**
 * The Apple Business Manager connection (README "Apple Business Manager"): what only an ABM-connected
 * server can do for account-driven enrollment.
 *
 * - The ABM key pair: an RSA 2048 key and self-signed certificate, generated on first use and stored
 *   sealed like the server's other keys (key_material `abmToken`). The administrator uploads the
 *   certificate to the MDM server in ABM; ABM encrypts the server token to it.
 * - The server token (`.p7m`): decrypted with that key (abm/server-token.ts), checked with Apple (a
 *   session, then Get Account Detail for `server_uuid`), and stored sealed with SERVER_SECRET.
 * - Account-driven enrollment service discovery (Device Assignment Services 5.1): register, read and
 *   remove the URL that ABM gives devices whose domain does not serve `/.well-known/com.apple.remotemanagement`
 *   (iOS 18.2, macOS 15.2, visionOS 2.2). Registering first checks that the URL answers discovery JSON.
 * - GetToken `com.apple.maid`: the JWT Apple specifies (abm/maid-jwt.ts), signed with the ABM key, `iss`
 *   the stored `server_uuid`; and whether new profiles offer `com.apple.mdm.token` (MAID_TOKENS).
 */
import { createHash, X509Certificate } from 'node:crypto'
import { AbmApiError, AbmClient, type AccountDetail } from '../abm/client.js'
import { maidClaims, signMaidJwt } from '../abm/maid-jwt.js'
import type { OAuthCredentials } from '../abm/oauth1.js'
import { readServerToken, type ServerToken } from '../abm/server-token.js'
import type { Config } from '../config/index.js'
import { AppError, BadRequestError, ConflictError, NotFoundError } from '../errors.js'
import { SecretBox } from '../pki/secretbox.js'
import { createSelfSigned, generateRsaKeyPair, type Identity } from '../pki/x509.js'
import { isLoopbackHost, type ServerUrls } from '../protocol/urls.js'
import { findAbmConnection, saveAbmToken, setAbmDiscovery } from '../storage/abm.js'
import type { Client } from '../storage/database.js'
import { findKeyMaterial } from '../storage/keys.js'
import type { AbmConnection } from '../storage/types.js'
import { abmFailure } from './abm-errors.js'
import { loadOrGenerate } from './keys.js'

/** The key_material row of the ABM key pair. */
export const ABM_KEY_NAME = 'abmToken'
/** The SecretBox record name (associated data) of the sealed server token. */
const TOKEN_RECORD = 'abm-server-token'
/** Warn this long before the server token expires (ABM tokens last one year). */
export const TOKEN_WARNING_DAYS = 30
const DAY_MS = 86_400_000
const YEAR_MS = 365 * DAY_MS
/** The discovery check must answer within this. */
const CHECK_TIMEOUT_MS = 10_000

export interface AbmLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface AbmDeps {
  db: Client
  config: Config
  urls: ServerUrls
  log?: AbmLogger
  /** For the calls to ABM and the discovery check; global fetch by default. */
  fetch?: typeof fetch
}

export interface AbmCertificateInfo {
  subject: string
  fingerprintSha256: string
  notAfter: Date
}

export interface AbmStatus {
  connected: boolean
  /** null until the key pair is generated (GET /api/v1/admin/abm/certificate). */
  certificate: AbmCertificateInfo | null
  serverUuid?: string
  account?: AccountDetail
  tokenExpiresAt?: Date
  tokenUploadedAt?: Date
  accountCheckedAt?: Date
  /** Whether new profiles offer com.apple.mdm.token and GetToken com.apple.maid is answered. */
  maidTokens: boolean
  discovery: { url: string; registeredAt: Date } | null
  warning?: string
}

export interface DiscoveryCheck {
  url: string
  userIdentifier: string
  status: number
  version: string
  baseUrl: string
}

export interface AbmService {
  /** The ABM key pair (generated and stored the first time); `generated` when this call made it. */
  identity(): Promise<{ identity: Identity; generated: boolean }>
  status(now?: Date): Promise<AbmStatus>
  /** Decrypts, checks with Apple and stores a server token file. */
  uploadToken(file: string | Uint8Array, now?: Date): Promise<AbmStatus>
  /** What ABM holds now (Fetch Account-Driven Enrollment Service Discovery). */
  fetchDiscovery(): Promise<{ url: string; lastUpdatedAt?: string }>
  /** Checks `url` (default: this server's discovery URL), then registers it at ABM. */
  registerDiscovery(url?: string, now?: Date): Promise<{ url: string; registeredAt: Date; check: DiscoveryCheck }>
  removeDiscovery(now?: Date): Promise<{ previousUrl: string | null }>
  /** ABM connected and MAID_TOKENS on: new profiles carry com.apple.mdm.token. */
  maidTokensEnabled(): Promise<boolean>
  /** A com.apple.maid JWT; undefined when the server does not serve that token type. */
  maidToken(now?: Date): Promise<{ jwt: string; jti: string } | undefined>
  /** The token-expiry warning, if any (start-up banner, admin API). */
  expiryWarning(now?: Date): Promise<string | undefined>
}

/** A warning when the token expires within TOKEN_WARNING_DAYS or has expired; pure, for every place that shows it. */
export function tokenExpiryWarning(expiresAt: Date, now: Date): string | undefined {
  const days = Math.floor((expiresAt.getTime() - now.getTime()) / DAY_MS)
  const renew = 'in Apple Business Manager, download a new token for this MDM server (Download Token) and upload it with PUT /api/v1/admin/abm/token'
  if (expiresAt.getTime() <= now.getTime()) {
    return `The Apple Business Manager server token expired on ${expiresAt.toISOString().slice(0, 10)}: the server can no longer reach ABM (discovery registration); ${renew}`
  }
  if (days < TOKEN_WARNING_DAYS) return `The Apple Business Manager server token expires on ${expiresAt.toISOString().slice(0, 10)} (in ${days} day${days === 1 ? '' : 's'}): ${renew}`
  return undefined
}

export function createAbmService(deps: AbmDeps): AbmService {
  const { db, config } = deps
  const box = new SecretBox(config.serverSecret)
  const httpFetch = deps.fetch ?? fetch
  let identityPromise: Promise<Identity> | undefined
  /** The client of the stored token, so its session is reused; replaced when another token is stored. */
  let cached: { key: string; client: AbmClient } | undefined

  async function loadIdentity(): Promise<{ identity: Identity; generated: boolean }> {
    const existed = identityPromise !== undefined || (await findKeyMaterial(db, ABM_KEY_NAME)) !== null
    identityPromise ??= loadOrGenerate(db, box, ABM_KEY_NAME, generateIdentity, deps.log).catch((err: unknown) => {
      identityPromise = undefined
      throw err
    })
    return { identity: await identityPromise, generated: !existed }
  }

  async function generateIdentity(): Promise<Identity> {
    const keys = await generateRsaKeyPair(2048)
    const notBefore = new Date(Date.now() - 3600_000)
    const certificate = await createSelfSigned({
      subject: [['CN', `${config.orgName} MDM server token`], ['O', config.orgName]],
      keys,
      notBefore,
      notAfter: new Date(notBefore.getTime() + 10 * YEAR_MS),
      // keyEncipherment: ABM encrypts the server token to it; digitalSignature: com.apple.maid JWTs.
      keyUsage: ['digitalSignature', 'keyEncipherment'],
    })
    return { certificate, privateKey: keys.privateKey, chain: [] }
  }

  async function certificateInfo(): Promise<AbmCertificateInfo | null> {
    const row = identityPromise ? null : await findKeyMaterial(db, ABM_KEY_NAME)
    if (!identityPromise && !row) return null
    const certificate = identityPromise ? (await identityPromise).certificate : new X509Certificate(row!.certificatePem)
    return describe(certificate)
  }

  function credentialsOf(connection: AbmConnection): OAuthCredentials {
    let json: Buffer
    try {
      json = box.open(TOKEN_RECORD, { ciphertext: Buffer.from(connection.tokenCiphertext), nonce: Buffer.from(connection.tokenNonce), tag: Buffer.from(connection.tokenTag) })
    } catch (err) {
      throw new Error('cannot decrypt the stored ABM server token: SERVER_SECRET differs from the one used when it was uploaded', { cause: err })
    }
    return JSON.parse(json.toString('utf8')) as OAuthCredentials
  }

  function clientFor(connection: AbmConnection): AbmClient {
    const key = `${connection.uploadedAt.getTime()}:${connection.serverUuid}`
    if (cached?.key !== key) cached = { key, client: newClient(credentialsOf(connection)) }
    return cached.client
  }

  const newClient = (credentials: OAuthCredentials) => new AbmClient({ baseUrl: config.abm.apiUrl, credentials, fetch: httpFetch })

  async function connection(): Promise<AbmConnection> {
    const row = await findAbmConnection(db)
    if (!row) throw new ConflictError('Apple Business Manager is not connected: upload the server token first (PUT /api/v1/admin/abm/token)', { code: 'abm_not_connected' })
    return row
  }

  function statusOf(row: AbmConnection | null, certificate: AbmCertificateInfo | null, now: Date): AbmStatus {
    if (!row) return { connected: false, certificate, maidTokens: false, discovery: null }
    return {
      connected: true,
      certificate,
      serverUuid: row.serverUuid,
      account: row.account as AccountDetail,
      tokenExpiresAt: row.tokenExpiresAt,
      tokenUploadedAt: row.uploadedAt,
      accountCheckedAt: row.accountCheckedAt,
      maidTokens: config.abm.maidTokens,
      discovery: row.discoveryUrl && row.discoveryRegisteredAt ? { url: row.discoveryUrl, registeredAt: row.discoveryRegisteredAt } : null,
      warning: tokenExpiryWarning(row.tokenExpiresAt, now),
    }
  }

  const service: AbmService = {
    identity: loadIdentity,

    async status(now = new Date()) {
      return statusOf(await findAbmConnection(db), await certificateInfo(), now)
    },

    async uploadToken(file, now = new Date()) {
      if (!identityPromise && !(await findKeyMaterial(db, ABM_KEY_NAME))) {
        throw new ConflictError(
          'This server has no ABM certificate yet, so no server token can be encrypted to it: download GET /api/v1/admin/abm/certificate, upload it to the MDM server in Apple Business Manager, then upload the token ABM gives you',
          { code: 'abm_certificate_missing' },
        )
      }
      const { identity } = await loadIdentity()
      const token = readServerToken(file, identity)
      if (token.expiresAt.getTime() <= now.getTime()) {
        throw new BadRequestError(`The server token expired on ${token.expiresAt.toISOString()}: download a new one in Apple Business Manager`, { code: 'token_expired' })
      }
      const client = newClient(token)
      let account: AccountDetail
      try {
        account = await client.account()
      } catch (err) {
        throw abmFailure(err, 'checking the server token with Apple')
      }
      if (typeof account.server_uuid !== 'string' || !account.server_uuid) {
        throw new AppError(502, 'abm_error', 'ABM answered GET /account without a server_uuid', { expose: true })
      }
      const sealed = box.seal(TOKEN_RECORD, Buffer.from(JSON.stringify(credentialsJson(token)), 'utf8'))
      const row = await saveAbmToken(
        db,
        {
          tokenCiphertext: new Uint8Array(sealed.ciphertext),
          tokenNonce: new Uint8Array(sealed.nonce),
          tokenTag: new Uint8Array(sealed.tag),
          tokenExpiresAt: token.expiresAt,
          serverUuid: account.server_uuid,
          account: accountJson(account),
          accountCheckedAt: now,
        },
        now,
      )
      // Keep the session this check opened.
      cached = { key: `${row.uploadedAt.getTime()}:${row.serverUuid}`, client }
      return statusOf(row, describe(identity.certificate), now)
    },

    async fetchDiscovery() {
      const client = clientFor(await connection())
      try {
        const profile = await client.fetchDiscovery()
        if (!profile.mdm_service_discovery_url) throw new NotFoundError('ABM holds no account-driven enrollment service discovery URL', { code: 'discovery_not_registered' })
        return { url: profile.mdm_service_discovery_url, lastUpdatedAt: profile.last_updated_timestamp }
      } catch (err) {
        if (err instanceof AbmApiError && err.status === 404) {
          throw new NotFoundError('ABM holds no account-driven enrollment service discovery URL (NOT_FOUND)', { code: 'discovery_not_registered' })
        }
        throw abmFailure(err, 'reading the service discovery URL')
      }
    },

    async registerDiscovery(requested, now = new Date()) {
      const row = await connection()
      const url = checkDiscoveryUrl(requested ?? deps.urls.discovery)
      const check = await checkDiscovery(url)
      try {
        await clientFor(row).assignDiscovery(url)
      } catch (err) {
        throw abmFailure(err, 'registering the service discovery URL')
      }
      await setAbmDiscovery(db, url, now)
      return { url, registeredAt: now, check }
    },

    async removeDiscovery(now = new Date()) {
      const row = await connection()
      try {
        await clientFor(row).removeDiscovery()
      } catch (err) {
        throw abmFailure(err, 'removing the service discovery URL')
      }
      await setAbmDiscovery(db, null, now)
      return { previousUrl: row.discoveryUrl }
    },

    async maidTokensEnabled() {
      return config.abm.maidTokens && (await findAbmConnection(db)) !== null
    },

    async maidToken(now = new Date()) {
      if (!config.abm.maidTokens) return undefined
      const row = await findAbmConnection(db)
      if (!row) return undefined
      const { identity } = await loadIdentity()
      const claims = maidClaims(row.serverUuid, now)
      return { jwt: signMaidJwt(claims, identity.privateKey), jti: claims.jti }
    },

    async expiryWarning(now = new Date()) {
      const row = await findAbmConnection(db)
      return row ? tokenExpiryWarning(row.tokenExpiresAt, now) : undefined
    },
  }

  /** GET `url?user-identifier=...&model-family=iPhone` must answer discovery JSON, as a device would get it. */
  async function checkDiscovery(url: string): Promise<DiscoveryCheck> {
    const domain = config.enrollment.domains?.[0]?.domain ?? 'example.com'
    const userIdentifier = `abm-discovery-check@${domain}`
    const target = new URL(url)
    target.searchParams.set('user-identifier', userIdentifier)
    target.searchParams.set('model-family', 'iPhone')
    const fail = (why: string): never => {
      throw new BadRequestError(`${url} does not answer service discovery (asked for ${userIdentifier}): ${why}. Devices sent there by ABM would fail to enroll, so it was not registered`, { code: 'discovery_check_failed' })
    }
    let res: Response
    try {
      res = await httpFetch(target, { headers: { accept: 'application/json' }, redirect: 'follow', signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) })
    } catch (err) {
      return fail(`it cannot be reached (${(err as Error).message})`)
    }
    const text = (await res.text()).slice(0, 64 * 1024)
    if (res.status !== 200) return fail(`it answered HTTP ${res.status}`)
    let servers: unknown
    try {
      servers = (JSON.parse(text) as { Servers?: unknown }).Servers
    } catch {
      return fail('it answered something that is not JSON')
    }
    const first = Array.isArray(servers) ? (servers[0] as { Version?: unknown; BaseURL?: unknown } | undefined) : undefined
    if (!first || (first.Version !== 'mdm-byod' && first.Version !== 'mdm-adde') || typeof first.BaseURL !== 'string' || !URL.canParse(first.BaseURL)) {
      return fail('its JSON has no Servers item with Version mdm-byod or mdm-adde and a BaseURL')
    }
    return { url, userIdentifier, status: res.status, version: first.Version, baseUrl: first.BaseURL }
  }

  return service
}

/** https (Apple: MDM_SERVICE_DISCOVERY_URL_NOT_VALID otherwise), or http on a loopback host (tests). */
export function checkDiscoveryUrl(value: string): string {
  const bad = (why: string): never => {
    throw new BadRequestError(`The service discovery URL ${why}`, { code: 'invalid_discovery_url' })
  }
  if (value.length > 2048) bad('is longer than 2048 characters')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return bad('is not an absolute URL')
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) bad('must be https:// (Apple refuses other schemes)')
  if (url.search || url.hash) bad('must not have a query or fragment: the device adds user-identifier and model-family itself')
  if (url.username || url.password) bad('must not contain credentials')
  return url.toString()
}

function describe(certificate: X509Certificate): AbmCertificateInfo {
  return {
    subject: certificate.subject.replace(/\n/g, ', '),
    fingerprintSha256: createHash('sha256').update(certificate.raw).digest('hex'),
    notAfter: new Date(certificate.validTo),
  }
}

function credentialsJson(token: ServerToken): OAuthCredentials {
  return { consumerKey: token.consumerKey, consumerSecret: token.consumerSecret, accessToken: token.accessToken, accessSecret: token.accessSecret }
}

/** Only the documented AccountDetail keys, as strings (what the admin API shows). */
function accountJson(account: AccountDetail): Record<string, string> {
  const out: Record<string, string> = {}
  for (const key of ['server_name', 'server_uuid', 'admin_id', 'facilitator_id', 'org_name', 'org_email', 'org_phone', 'org_address', 'org_id', 'org_id_hash', 'org_type', 'org_version'] as const) {
    const v = account[key]
    if (typeof v === 'string' && v.length <= 1024) out[key] = v
  }
  return out
}
