/**
 * Configuration: every environment variable the server reads is declared here, once, in one zod schema.
 * Nothing else in the code base reads `process.env`. Values are parsed and checked at start-up so that a
 * wrong setting stops the server with one line naming the variable, instead of failing on the first
 * device request.
 */
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import { readApnsCa, readApnsCredentials } from './apns.js'
import { readEssoSettings } from './esso.js'
import type { EssoSettings } from '../protocol/esso.js'
import { readIdentity, type PemIdentity } from './pem.js'
import type { PushCredentials } from '../push/credentials.js'
import { APPLE_OAUTH2_REDIRECT_URL, readOidc, readSso, type OidcSettings, type SsoConfig } from './sign-in.js'
import { isLoopbackHost } from '../protocol/urls.js'
import { bool, claimName, ConfigError, duration, int, pemOrPath, url, type Environment } from './values.js'
import { USER_ENROLLMENT_FAMILIES, type ModelFamily } from '../protocol/discovery.js'
import { parseEnrollDomains, parseModelFamilies, parseTeamNames } from './enrollment.js'

export { ConfigError, type Environment } from './values.js'
export { readPem, type PemIdentity } from './pem.js'
export { APPLE_OAUTH2_REDIRECT_URL, type OidcSettings, type SamlSettings, type SsoConfig } from './sign-in.js'

/** Headers MDM_CLIENT_CERT_HEADER must not name: the device sets them, so a proxy could not own them. */
const RESERVED_HEADERS = new Set(['mdm-signature', 'authorization', 'content-type', 'content-length', 'content-encoding', 'host', 'user-agent', 'cookie'])

const envSchema = z.object({
  NODE_ENV: z.string().optional(),
  PORT: int(0, 65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  SERVER_URL: url.optional(),
  ORG_NAME: z.string().min(1).max(200).default('My Organisation'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// connection URL')
    .optional(),
  DATABASE_POOL_MAX: int(1, 1000).default(10),
  WORKERS: z
    .string()
    .regex(/^(auto|\d+)$/, 'expected a whole number of processes, or auto (one per CPU core)')
    .transform((v) => (v === 'auto' ? 'auto' : Number(v)))
    .pipe(z.union([z.literal('auto'), z.number().min(1, 'must be at least 1').max(256, 'must be at most 256')]))
    .optional(),
  MALLOC_ARENA_MAX: int(1, 64).default(2),
  DATABASE_STATEMENT_TIMEOUT: duration.default(10),
  DATABASE_CONNECT_TIMEOUT: duration.default(5),
  SERVER_SECRET: z.string().min(32, 'must be at least 32 characters (openssl rand -base64 32)').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TRUST_PROXY: z.string().optional(),
  REQUEST_TIMEOUT: duration.pipe(z.number().min(1, 'must be at least 1s')).default(30),
  MAX_CONNECTIONS: int(1, 1_000_000).default(4096),
  ENROLLMENT_WINDOW: duration.default(3600),
  SCEP_CA_CERT: pemOrPath.optional(),
  SCEP_CA_KEY: pemOrPath.optional(),
  SCEP_CERT_VALIDITY_DAYS: int(1, 3650).default(365),
  PROFILE_SIGNING_CERT: pemOrPath.optional(),
  PROFILE_SIGNING_KEY: pemOrPath.optional(),
  PROFILE_SIGNING_CHAIN: pemOrPath.optional(),
  APNS_TOPIC: z
    .string()
    .regex(/^com\.apple\.mgmt\.[\x21-\x7e]+$/, 'must start with com.apple.mgmt. (the UID in your APNs push certificate subject)')
    .optional(),
  ENROLL_DEVICE_SIGNATURE: z.enum(['strict', 'log']).default('strict'),
  ENROLL_RATE_LIMIT: int(1, 1_000_000).default(120),
  ENROLL_DEVICE_TEAMS: z.string().optional(),
  ENROLL_DOMAINS: z.string().optional(),
  ENROLL_MODEL_FAMILIES: z.string().default(USER_ENROLLMENT_FAMILIES.join(',')),
  MANAGED_APPLE_ID_SOURCE: z.enum(['auto', 'email', 'user-identifier']).default('auto'),
  AUTH_METHOD: z.enum(['saml', 'oauth2']).default('saml'),
  OIDC_ISSUER: url.optional(),
  // RFC 6749 appendix A.1/A.2: client_id and client_secret are VSCHARs.
  OIDC_CLIENT_ID: z.string().regex(/^[\x20-\x7e]{1,500}$/, 'expected at most 500 printable ASCII characters').optional(),
  OIDC_CLIENT_SECRET: z.string().regex(/^[\x20-\x7e]{1,4096}$/, 'expected printable ASCII characters').optional(),
  // RFC 6749 section 3.3 scope-tokens; the value is quoted into the WWW-Authenticate header.
  OIDC_SCOPE: z
    .string()
    .regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'expected space-separated scope names')
    .refine((v) => v.split(' ').includes('openid'), { message: 'must include openid' })
    .default('openid email profile'),
  OIDC_REDIRECT_URL: z.string().default(APPLE_OAUTH2_REDIRECT_URL),
  OIDC_TOKEN_AUTH_METHOD: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
  OIDC_EMAIL_CLAIM: claimName.default('email'),
  OIDC_NAME_CLAIM: claimName.default('name'),
  OIDC_GROUPS_CLAIM: claimName.default('groups'),
  OIDC_HTTP_TIMEOUT: duration.pipe(z.number().min(1, 'must be at least 1s').max(60, 'must be at most 60s')).default(10),
  OIDC_ALLOW_INSECURE_HTTP: bool.default(false),
  OAUTH2_ACCESS_TOKEN_TTL: duration.pipe(z.number().min(60, 'must be at least 60s').max(30 * 86400, 'must be at most 30d')).default(3600),
  OAUTH2_REFRESH_TOKEN_TTL: duration.pipe(z.number().min(3600, 'must be at least 1h').max(400 * 86400, 'must be at most 400d')).default(90 * 86400),
  OAUTH2_RATE_LIMIT: int(1, 1_000_000).default(30),
  SAML_IDP_METADATA: z.string().min(1).optional(),
  SAML_IDP_ENTITY_ID: z.string().min(1).max(1024).optional(),
  SAML_IDP_SSO_URL: url.optional(),
  SAML_IDP_CERT: pemOrPath.optional(),
  SAML_SP_ENTITY_ID: z.string().min(1).max(1024).optional(),
  SAML_SP_CERT: pemOrPath.optional(),
  SAML_SP_KEY: pemOrPath.optional(),
  SAML_WANT_RESPONSE_SIGNED: bool.default(true),
  SAML_NAMEID_FORMAT: z.string().min(1).max(200).default('urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'),
  SAML_EMAIL_ATTRIBUTE: z.string().min(1).max(500).optional(),
  SAML_NAME_ATTRIBUTE: z.string().min(1).max(500).optional(),
  SAML_GROUPS_ATTRIBUTE: z.string().min(1).max(500).optional(),
  SAML_CLOCK_SKEW: duration.pipe(z.number().max(600, 'must be at most 10m')).default(60),
  SSO_REQUIRE_IDENTIFIER_MATCH: bool.default(false),
  SSO_TEAM_GROUPS: z.string().min(1).optional(),
  SSO_RATE_LIMIT: int(1, 1_000_000).default(60),
  ALLOW_DEV_SIGNIN: bool.default(false),
  REAUTH_AFTER: duration
    .pipe(z.number().max(400 * 86400, 'must be at most 400d'))
    .refine((v) => v === 0 || v >= 3600, { message: 'must be 0 (off) or at least 1h: every expiry makes the user sign in again' })
    .optional(),
  ADMIN_API_TOKEN: z.string().regex(/^[\x21-\x7e]{32,512}$/, 'must be 32 to 512 printable characters without spaces (openssl rand -base64 32)').optional(),
  ADMIN_RATE_LIMIT: int(1, 1_000_000).default(600),
  STALE_AFTER: duration.pipe(z.number().min(86400, 'must be at least 1d')).default(30 * 86400),
  LAST_SEEN_INTERVAL: duration.pipe(z.number().max(3600, 'must be at most 1h')).default(60),
  APNS_URL: url.default('https://api.push.apple.com'),
  APNS_CERT: pemOrPath.optional(),
  APNS_KEY: pemOrPath.optional(),
  APNS_P12: z.string().min(1).optional(),
  APNS_P12_PASSWORD: z.string().optional(),
  APNS_CA: pemOrPath.optional(),
  ABM_API_URL: url.default('https://mdmenrollment.apple.com'),
  MAID_TOKENS: bool.default(true),
  MDM_CLIENT_CERT_HEADER: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,99}$/, 'expected an HTTP header name such as X-Client-Cert')
    .transform((v) => v.toLowerCase())
    .refine((v) => !RESERVED_HEADERS.has(v), { message: 'must be a header of its own, not one the device or HTTP itself sends' })
    .optional(),
})

export type Env = z.infer<typeof envSchema>

export interface Config {
  port: number
  host: string
  /**
   * Server processes one start runs (node:cluster, sharing the port): WORKERS, by default one per CPU
   * core with Postgres and 1 with the embedded database (which one process owns).
   */
  workers: number
  /**
   * glibc's MALLOC_ARENA_MAX for the worker processes, which the supervisor starts (docs/deploy.md#memory).
   * glibc reads it when a process starts: a single process takes it from its own environment only.
   */
  workerMallocArenaMax: number
  /** Public base URL devices use, without a trailing slash. */
  serverUrl: string
  orgName: string
  dataDir: string
  database:
    | { kind: 'postgres'; url: string; poolMax: number; statementTimeoutMs: number; connectTimeoutMs: number }
    | { kind: 'pglite'; dir: string }
  /** Secret from which the key-material encryption key is derived. */
  serverSecret: string
  logLevel: Env['LOG_LEVEL']
  trustProxy: boolean | string
  requestTimeoutMs: number
  /** Open connections the server accepts at once; more are closed on arrival. */
  maxConnections: number
  /** How long after sign-in an access token may start an enrollment (fetch a profile, get a certificate). */
  enrollmentWindowSeconds: number
  /** The APNs topic put into new enrollment profiles; while unset they get services/profiles.ts PLACEHOLDER_TOPIC. */
  apnsTopic?: string
  enrollment: {
    /** `strict`: refuse enroll bodies not signed by an Apple device identity (403); `log`: log and go on. */
    deviceSignature: 'strict' | 'log'
    /** Which user-identifier domains discovery serves, and for which team (by name; undefined = Default). Unset: every domain, Default team. */
    domains?: { domain: string; team?: string }[]
    /** Model families discovery and enroll accept. */
    modelFamilies: ModelFamily[]
    /** Where AssignedManagedAppleID comes from (services/profiles.ts assignedManagedAppleId). */
    managedAppleIdSource: 'auto' | 'email' | 'user-identifier'
    /** Requests per minute per client address on discovery and on the enroll endpoint (each its own count). */
    rateLimitPerMinute: number
    /** Teams (by name, created when missing) set at start to account-driven device enrollment. */
    deviceTeams: string[]
  }
  /** Validity of the device identity certificates the SCEP CA issues, in days. */
  scepCertValidityDays: number
  /** Key material supplied by the admin; absent parts are generated and stored encrypted. */
  keys: {
    scepCa?: PemIdentity
    profileSigner?: PemIdentity
  }
  /** How teams without their own `auth_method` sign users in. */
  authMethod: 'saml' | 'oauth2'
  /** null when no OIDC provider is configured (then no team can use `oauth2`). */
  oidc: OidcSettings | null
  /** Our own tokens handed out by the OAuth 2 token endpoint. */
  oauth2: {
    accessTokenTtlSeconds: number
    refreshTokenTtlSeconds: number
    /** Requests per minute per client address on the token endpoint. */
    rateLimitPerMinute: number
  }
  sso: SsoConfig
  /** The check-in and command channel (PUT /mdm/apple/mdm). */
  /** Enrollment SSO for teams without their own settings (ESSO_*); null when not configured. */
  esso: EssoSettings | null
  /** The administration API (/api/v1/admin); null when ADMIN_API_TOKEN is unset (the API answers 404). */
  admin: { token: string; rateLimitPerMinute: number } | null
  /** Enrollments not seen for this long are stale (the admin API lists and removes them). */
  staleAfterSeconds: number
  /**
   * APNs: where to push, the push identity (null: no pushes, commands wait for the next check-in), and
   * extra trust roots (PEM) for the APNs server certificate (APNS_CA: a TLS-inspecting proxy, tests).
   */
  apns: { url: string; credentials: PushCredentials | null; ca?: string }
  /**
   * Apple Business Manager (services/abm.ts): the Device Assignment Services base URL (tests point it at a
   * fake) and whether new profiles offer `com.apple.mdm.token` for GetToken `com.apple.maid` while ABM is
   * connected.
   */
  abm: { apiUrl: string; maidTokens: boolean }
  checkin: {
    /** How long an interactive sign-in is good for before the device must sign the user in again; undefined: forever. */
    reauthAfterSeconds?: number
    /**
     * Lowercase name of the header in which a TLS-terminating proxy forwards the client certificate it
     * verified (nginx `$ssl_client_escaped_cert`); undefined: identity comes from Mdm-Signature only.
     */
    clientCertHeader?: string
    /**
     * An enrollment's and a channel's last-seen time is written when it is older than this (and whenever
     * the accepted token changes): a device checking in every few seconds costs no write each time.
     */
    lastSeenIntervalSeconds: number
  }
}

export interface LoadOptions {
  /**
   * Embedded mode without SERVER_SECRET: create DATA_DIR and its `server-secret` file when missing
   * (default). `npm run doctor` passes false: it must leave a machine as it found it, and with no data
   * directory there are no stored keys the secret could open, so a throwaway one is returned instead.
   */
  createDataDir?: boolean
}

/**
 * Parses the environment into a Config, or throws ConfigError naming the first bad variable.
 * In embedded mode this may create DATA_DIR and the SERVER_SECRET file in it (see LoadOptions).
 */
export function loadConfig(env: Environment = process.env, options: LoadOptions = {}): Config {
  // Empty strings mean "unset": `FOO=` in a .env file or a compose file should fall back to the default.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''))
  const parsed = envSchema.safeParse(cleaned)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ConfigError(String(issue.path[0] ?? 'environment'), issue.message)
  }
  const e = parsed.data
  const dataDir = path.resolve(e.DATA_DIR)
  const serverUrl = (e.SERVER_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, '')
  const parsedServerUrl = new URL(serverUrl)
  if (parsedServerUrl.search || parsedServerUrl.hash) {
    throw new ConfigError('SERVER_URL', 'must not contain a query string or fragment')
  }
  // Apple requires https for ServerURL, CheckInURL and token-url (mdm/profiles/com.apple.mdm.yaml: format
  // ^https://): a device refuses a profile built from a plain-http public URL. A loopback http URL can only
  // be reached from this machine (npm start on a laptop, the simulator, tests), so it stays allowed.
  if (parsedServerUrl.protocol !== 'https:' && !isLoopbackHost(parsedServerUrl.hostname)) {
    throw new ConfigError('SERVER_URL', `must be an https:// URL (Apple devices refuse plain http); http is only allowed for a loopback address such as http://localhost:${e.PORT}`)
  }

  // The server token's OAuth credentials go to this host: https only, except a loopback test double.
  const abmApiUrl = new URL(e.ABM_API_URL)
  if (abmApiUrl.protocol !== 'https:' && !isLoopbackHost(abmApiUrl.hostname)) throw new ConfigError('ABM_API_URL', 'must be an https:// URL (http only for a loopback address)')

  const database: Config['database'] = e.DATABASE_URL
    ? {
        kind: 'postgres',
        url: e.DATABASE_URL,
        poolMax: e.DATABASE_POOL_MAX,
        statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT * 1000,
        connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT * 1000,
      }
    : { kind: 'pglite', dir: path.join(dataDir, 'pgdata') }

  const workers = e.WORKERS === undefined || e.WORKERS === 'auto' ? (database.kind === 'pglite' ? 1 : availableParallelism()) : e.WORKERS
  if (workers > 1 && database.kind === 'pglite') {
    throw new ConfigError('WORKERS', `is ${workers} but the embedded database (no DATABASE_URL) is opened by one process only; set DATABASE_URL to a Postgres server to run several`)
  }

  let serverSecret = e.SERVER_SECRET
  if (!serverSecret) {
    if (database.kind === 'postgres') {
      throw new ConfigError(
        'SERVER_SECRET',
        'required when DATABASE_URL is set, so every server process can read the shared keys (generate one with: openssl rand -base64 32)',
      )
    }
    serverSecret = embeddedServerSecret(dataDir, options.createDataDir ?? true)
  }

  const apnsCredentials = readApnsCredentials(e)
  // The profile's Topic must be the push certificate's, or pushes are accepted by APNs and dropped.
  if (apnsCredentials && e.APNS_TOPIC && e.APNS_TOPIC !== apnsCredentials.topic) {
    throw new ConfigError('APNS_TOPIC', `is ${e.APNS_TOPIC} but the push certificate's topic is ${apnsCredentials.topic}; remove APNS_TOPIC or make them equal`)
  }

  return {
    port: e.PORT,
    host: e.HOST,
    workers,
    workerMallocArenaMax: e.MALLOC_ARENA_MAX,
    serverUrl,
    orgName: e.ORG_NAME,
    dataDir,
    database,
    serverSecret,
    logLevel: e.LOG_LEVEL,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    requestTimeoutMs: e.REQUEST_TIMEOUT * 1000,
    maxConnections: e.MAX_CONNECTIONS,
    enrollmentWindowSeconds: e.ENROLLMENT_WINDOW,
    apnsTopic: apnsCredentials?.topic ?? e.APNS_TOPIC,
    enrollment: {
      deviceSignature: e.ENROLL_DEVICE_SIGNATURE,
      domains: e.ENROLL_DOMAINS === undefined ? undefined : parseEnrollDomains(e.ENROLL_DOMAINS),
      modelFamilies: parseModelFamilies(e.ENROLL_MODEL_FAMILIES),
      managedAppleIdSource: e.MANAGED_APPLE_ID_SOURCE,
      rateLimitPerMinute: e.ENROLL_RATE_LIMIT,
      deviceTeams: parseTeamNames(e.ENROLL_DEVICE_TEAMS),
    },
    scepCertValidityDays: e.SCEP_CERT_VALIDITY_DAYS,
    keys: {
      scepCa: readIdentity(env, 'SCEP_CA_CERT', 'SCEP_CA_KEY'),
      profileSigner: readIdentity(env, 'PROFILE_SIGNING_CERT', 'PROFILE_SIGNING_KEY', 'PROFILE_SIGNING_CHAIN'),
    },
    authMethod: e.AUTH_METHOD,
    oidc: readOidc(e),
    oauth2: {
      accessTokenTtlSeconds: e.OAUTH2_ACCESS_TOKEN_TTL,
      refreshTokenTtlSeconds: e.OAUTH2_REFRESH_TOKEN_TTL,
      rateLimitPerMinute: e.OAUTH2_RATE_LIMIT,
    },
    sso: readSso(env, e, serverUrl),
    esso: readEssoSettings(env),
    admin: e.ADMIN_API_TOKEN ? { token: e.ADMIN_API_TOKEN, rateLimitPerMinute: e.ADMIN_RATE_LIMIT } : null,
    staleAfterSeconds: e.STALE_AFTER,
    apns: { url: e.APNS_URL, credentials: apnsCredentials, ca: readApnsCa(e) },
    abm: { apiUrl: e.ABM_API_URL.replace(/\/+$/, ''), maidTokens: e.MAID_TOKENS },
    checkin: {
      reauthAfterSeconds: e.REAUTH_AFTER ? e.REAUTH_AFTER : undefined,
      clientCertHeader: e.MDM_CLIENT_CERT_HEADER,
      lastSeenIntervalSeconds: e.LAST_SEEN_INTERVAL,
    },
  }
}

function parseTrustProxy(v: string | undefined): boolean | string {
  if (v === undefined || v === 'false' || v === '0') return false
  if (v === 'true' || v === '1') return true
  return v // a comma-separated list of addresses/CIDRs, as Fastify accepts it
}

/** Embedded mode keeps its secret next to the database, created once with mode 0600. */
function embeddedServerSecret(dataDir: string, create: boolean): string {
  const file = path.join(dataDir, 'server-secret')
  try {
    if (existsSync(file)) {
      const secret = readFileSync(file, 'utf8').trim()
      if (secret.length < 32) throw new ConfigError('SERVER_SECRET', `${file} holds fewer than 32 characters`)
      return secret
    }
    if (!create) return randomBytes(32).toString('base64url')
    mkdirSync(dataDir, { recursive: true })
    const secret = randomBytes(32).toString('base64url')
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' })
    chmodSync(file, 0o600)
    return secret
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError('DATA_DIR', `cannot create or read ${file}: ${(err as Error).message}`)
  }
}

