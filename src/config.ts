/**
 * Configuration: every environment variable the server reads is declared here, once, in one zod schema.
 * Nothing else in the code base reads `process.env`. Values are parsed and checked at start-up so that a
 * wrong setting stops the server with one line naming the variable, instead of failing on the first
 * device request.
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import { isDomainName, USER_ENROLLMENT_FAMILIES, type ModelFamily } from './protocol/discovery.js'

/** A configuration problem: `variable` is the environment variable to fix. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`)
    this.name = 'ConfigError'
  }
}

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes')

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))

/** Durations: `90`, `90s`, `15m`, `1h`, `7d`; returned in seconds. */
const duration = z
  .string()
  .regex(/^\d+\s*(s|m|h|d)?$/, 'expected a duration such as 90s, 15m, 1h or 7d')
  .transform((v) => {
    const n = Number.parseInt(v, 10)
    const unit = v.trim().slice(-1)
    const factor = unit === 'm' ? 60 : unit === 'h' ? 3600 : unit === 'd' ? 86400 : 1
    return n * factor
  })

const url = z.url({ message: 'expected an absolute http(s) URL' }).refine((v) => /^https?:\/\//.test(v), {
  message: 'expected an absolute http(s) URL',
})

/**
 * A PEM value given either inline (the variable holds the PEM text) or as a path to a PEM file. Kept as
 * the raw string here; `readPem` resolves it after the schema has run.
 */
const pemOrPath = z.string().min(1)

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
  DATABASE_STATEMENT_TIMEOUT: duration.default(10),
  DATABASE_CONNECT_TIMEOUT: duration.default(5),
  SERVER_SECRET: z.string().min(32, 'must be at least 32 characters (openssl rand -base64 32)').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TRUST_PROXY: z.string().optional(),
  REQUEST_TIMEOUT: duration.default(30),
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
  ENROLL_DOMAINS: z.string().optional(),
  ENROLL_MODEL_FAMILIES: z.string().default(USER_ENROLLMENT_FAMILIES.join(',')),
  MANAGED_APPLE_ID_SOURCE: z.enum(['auto', 'email', 'user-identifier']).default('auto'),
})

type Env = z.infer<typeof envSchema>

/** A certificate and private key given by the administrator (PEM text). */
export interface PemIdentity {
  certificatePem: string
  keyPem: string
  /** Intermediate certificates to send along, PEM, possibly empty. */
  chainPem: string[]
}

export interface Config {
  port: number
  host: string
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
  }
  /** Validity of the device identity certificates the SCEP CA issues, in days. */
  scepCertValidityDays: number
  /** Key material supplied by the admin; absent parts are generated and stored encrypted. */
  keys: {
    scepCa?: PemIdentity
    profileSigner?: PemIdentity
  }
}

export type Environment = Record<string, string | undefined>

/**
 * Parses the environment into a Config, or throws ConfigError naming the first bad variable.
 * In embedded mode this may create DATA_DIR and the SERVER_SECRET file in it.
 */
export function loadConfig(env: Environment = process.env): Config {
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
  if (new URL(serverUrl).search || new URL(serverUrl).hash) {
    throw new ConfigError('SERVER_URL', 'must not contain a query string or fragment')
  }

  const database: Config['database'] = e.DATABASE_URL
    ? {
        kind: 'postgres',
        url: e.DATABASE_URL,
        poolMax: e.DATABASE_POOL_MAX,
        statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT * 1000,
        connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT * 1000,
      }
    : { kind: 'pglite', dir: path.join(dataDir, 'pgdata') }

  let serverSecret = e.SERVER_SECRET
  if (!serverSecret) {
    if (database.kind === 'postgres') {
      throw new ConfigError(
        'SERVER_SECRET',
        'required when DATABASE_URL is set, so every server process can read the shared keys (generate one with: openssl rand -base64 32)',
      )
    }
    serverSecret = embeddedServerSecret(dataDir)
  }

  return {
    port: e.PORT,
    host: e.HOST,
    serverUrl,
    orgName: e.ORG_NAME,
    dataDir,
    database,
    serverSecret,
    logLevel: e.LOG_LEVEL,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    requestTimeoutMs: e.REQUEST_TIMEOUT * 1000,
    enrollmentWindowSeconds: e.ENROLLMENT_WINDOW,
    apnsTopic: e.APNS_TOPIC,
    enrollment: {
      deviceSignature: e.ENROLL_DEVICE_SIGNATURE,
      domains: e.ENROLL_DOMAINS === undefined ? undefined : parseEnrollDomains(e.ENROLL_DOMAINS),
      modelFamilies: parseModelFamilies(e.ENROLL_MODEL_FAMILIES),
      managedAppleIdSource: e.MANAGED_APPLE_ID_SOURCE,
    },
    scepCertValidityDays: e.SCEP_CERT_VALIDITY_DAYS,
    keys: {
      scepCa: readIdentity(env, 'SCEP_CA_CERT', 'SCEP_CA_KEY'),
      profileSigner: readIdentity(env, 'PROFILE_SIGNING_CERT', 'PROFILE_SIGNING_KEY', 'PROFILE_SIGNING_CHAIN'),
    },
  }
}

/** `example.com, example.org=Contractors`: domains, each optionally `=team name`. */
function parseEnrollDomains(value: string): { domain: string; team?: string }[] {
  const out: { domain: string; team?: string }[] = []
  for (const entry of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=')
    const domain = (eq < 0 ? entry : entry.slice(0, eq)).trim().toLowerCase()
    const team = eq < 0 ? undefined : entry.slice(eq + 1).trim()
    if (!isDomainName(domain)) throw new ConfigError('ENROLL_DOMAINS', `"${domain}" is not a domain name`)
    if (team !== undefined && (team.length === 0 || team.length > 200)) throw new ConfigError('ENROLL_DOMAINS', `the team name for ${domain} must be 1 to 200 characters`)
    if (out.some((d) => d.domain === domain)) throw new ConfigError('ENROLL_DOMAINS', `${domain} is listed twice`)
    out.push({ domain, team })
  }
  if (out.length === 0) throw new ConfigError('ENROLL_DOMAINS', 'lists no domain (leave it unset to serve every domain)')
  return out
}

function parseModelFamilies(value: string): ModelFamily[] {
  const families = value.split(',').map((s) => s.trim()).filter(Boolean)
  for (const f of families) {
    if (!(USER_ENROLLMENT_FAMILIES as readonly string[]).includes(f)) {
      throw new ConfigError('ENROLL_MODEL_FAMILIES', `"${f}" is not one of ${USER_ENROLLMENT_FAMILIES.join(', ')} (the families with user enrollment)`)
    }
  }
  if (families.length === 0) throw new ConfigError('ENROLL_MODEL_FAMILIES', 'lists no model family')
  return [...new Set(families)] as ModelFamily[]
}

function parseTrustProxy(v: string | undefined): boolean | string {
  if (v === undefined || v === 'false' || v === '0') return false
  if (v === 'true' || v === '1') return true
  return v // a comma-separated list of addresses/CIDRs, as Fastify accepts it
}

/** Embedded mode keeps its secret next to the database, created once with mode 0600. */
function embeddedServerSecret(dataDir: string): string {
  const file = path.join(dataDir, 'server-secret')
  try {
    if (existsSync(file)) {
      const secret = readFileSync(file, 'utf8').trim()
      if (secret.length < 32) throw new ConfigError('SERVER_SECRET', `${file} holds fewer than 32 characters`)
      return secret
    }
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

function pemBlocks(text: string, kind: RegExp): string[] {
  return [...text.matchAll(PEM_BLOCK)].filter((m) => kind.test(m[1]!)).map((m) => `${m[0]}\n`)
}

function readIdentity(env: Environment, certVar: string, keyVar: string, chainVar?: string): PemIdentity | undefined {
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
