/**
 * `npm run doctor`: checks a configuration before anything goes live, one line per check (result.ts).
 * It reads the configuration the server reads, and changes nothing: no directory or database is
 * created, no migration applied, no key generated. The configuration a bare `npm start` uses passes
 * with warnings (what a production deployment still needs), never failures.
 */
import type { Config, Environment } from '../../config/index.js'
import type { Identity } from '../../pki/x509.js'
import type { Database, DatabaseOptions } from '../../storage/database.js'
import { checkAbm } from './abm.js'
import { checkApns } from './apns.js'
import { loadForDoctor } from './config.js'
import { checkDatabase } from './database.js'
import { checkEsso } from './esso.js'
import { checkServerKey, type KeySource } from './keys.js'
import type { ConnectTo, NetOptions } from './net.js'
import { fail, ok, skipped, type CheckResult, type Outcome } from './result.js'
import { checkServerReachable, checkServerUrlScheme } from './server-url.js'
import { checkOidc, checkSaml } from './sign-in.js'
import { checkTls } from './tls.js'
import { checkWellKnown } from './well-known.js'

export { formatLine, summary, type CheckResult, type Status } from './result.js'
export { parseConnectTo, type ConnectTo } from './net.js'

export interface DoctorOptions {
  /** Send connections for one host:port elsewhere (curl's --connect-to). */
  connectTo?: ConnectTo[]
  /** Extra PEM trust roots (as NODE_EXTRA_CA_CERTS adds them to a whole process). */
  ca?: string[]
  /** Per network request; default 10 s. */
  timeoutMs?: number
  /** Open this database instead of the configured one (tests hand in their own). */
  databaseOptions?: DatabaseOptions
  now?: Date
}

const LABELS: Record<string, string> = {
  configuration: 'configuration',
  database: 'database',
  'server-url': 'SERVER_URL',
  'server-reachable': 'SERVER_URL reachable',
  'server-tls': 'SERVER_URL TLS',
  saml: 'sign-in: SAML',
  oidc: 'sign-in: OpenID Connect',
  'scep-ca': 'SCEP CA',
  'profile-signer': 'profile signing identity',
  apns: 'APNs push certificate',
  esso: 'Enrollment SSO',
  abm: 'Apple Business Manager',
  'well-known': '.well-known',
}

export async function runDoctor(env: Environment, options: DoctorOptions = {}): Promise<CheckResult[]> {
  const now = options.now ?? new Date()
  const net: NetOptions = { ca: options.ca, connectTo: options.connectTo, timeoutMs: options.timeoutMs ?? 10_000 }
  const results: CheckResult[] = []
  const add = (id: string, outcome: Outcome, label = LABELS[id] ?? id) => results.push({ id, label, ...outcome })

  const loaded = loadForDoctor(env)
  for (const error of loaded.errors) {
    add(`configuration:${error.variable}`, fail(error.message, `correct ${error.variable} (.env.example describes every variable); npm start stops with this same message until then`), 'configuration')
  }
  const config = loaded.config
  if (!config) {
    for (const id of Object.keys(LABELS).filter((id) => id !== 'configuration')) add(id, skipped('the configuration does not load (see above)'))
    return results
  }
  if (loaded.errors.length === 0) add('configuration', ok(`loads: ${config.database.kind === 'pglite' ? `embedded database in ${config.dataDir}` : 'Postgres (DATABASE_URL)'}, SERVER_URL ${config.serverUrl}`))
  const broken = (id: string): Outcome | undefined => {
    const variable = loaded.brokenChecks.get(id)
    return variable ? skipped(`${variable} does not load (see configuration above)`) : undefined
  }

  const database = await checkDatabase(config, options.databaseOptions)
  add('database', database.outcome)
  try {
    const network = runNetworkChecks(config, database.db, net, broken)
    const source: KeySource = database.db ? { db: database.db } : database.absent ? { absent: true } : { unreadable: true }
    let signer: Identity | undefined
    for (const [id, name] of [['scep-ca', 'scepCa'], ['profile-signer', 'profileSigner']] as const) {
      const outcome = broken(id)
      if (outcome) {
        add(id, outcome)
        continue
      }
      const checked = await checkServerKey(name, config, source, Boolean(env.SERVER_SECRET), now)
      add(id, checked.outcome)
      if (name === 'profileSigner') signer = checked.identity
    }
    add('saml', broken('saml') ?? checkSaml(config, now))
    add('apns', broken('apns') ?? checkApns(config, env, now))
    add('esso', broken('esso') ?? (await checkEsso(config, database.db, signer)))
    add('abm', await checkAbm(database.db, now))
    for (const result of await network) results.push(result)
  } finally {
    await (database.db ?? database.openOnly)?.close().catch(() => {})
  }
  return order(results)
}

/** The checks that go out on the network, run side by side (each may wait for a timeout). */
async function runNetworkChecks(config: Config, db: Database | undefined, net: NetOptions, broken: (id: string) => Outcome | undefined): Promise<CheckResult[]> {
  const serverUrl = new URL(config.serverUrl)
  const checks: [string, string, Promise<Outcome>][] = [
    ['server-url', LABELS['server-url']!, Promise.resolve(checkServerUrlScheme(config))],
    ['server-reachable', LABELS['server-reachable']!, checkServerReachable(config, net, db)],
    ['server-tls', LABELS['server-tls']!, serverUrl.protocol === 'https:' ? checkTls(serverUrl, net) : Promise.resolve(skipped('SERVER_URL is not https (see SERVER_URL)'))],
    ['oidc', LABELS.oidc!, Promise.resolve(broken('oidc') ?? checkOidc(config, net))],
  ]
  const wellKnownBroken = broken('well-known')
  if (wellKnownBroken) checks.push(['well-known', LABELS['well-known']!, Promise.resolve(wellKnownBroken)])
  else if (!config.enrollment.domains) {
    checks.push(['well-known', LABELS['well-known']!, Promise.resolve(skipped('ENROLL_DOMAINS is not set, so there is no domain to check', "set ENROLL_DOMAINS to your users' account domains (example.com) to check that each serves service discovery"))])
  } else {
    for (const { domain, team } of config.enrollment.domains) {
      checks.push([`well-known:${domain}`, `.well-known ${domain}`, checkWellKnown(domain, team, config, db, net)])
      checks.push([`tls:${domain}`, `TLS ${domain}`, checkTls(new URL(`https://${domain}/`), net)])
    }
  }
  const outcomes = await Promise.all(checks.map(([, , p]) => p.catch((err: Error) => fail(`the check itself failed: ${err.message}`))))
  return checks.map(([id, label], i) => ({ id, label, ...outcomes[i]! }))
}

/** Lines in a fixed order, whatever finished first: configuration, database, SERVER_URL, sign-in, keys, push, ESSO, domains. */
function order(results: CheckResult[]): CheckResult[] {
  const rank = (id: string) => {
    const base = id.split(':')[0]!
    // A domain's TLS line follows its .well-known line.
    const i = ['configuration', 'database', 'server-url', 'server-reachable', 'server-tls', 'saml', 'oidc', 'scep-ca', 'profile-signer', 'apns', 'esso', 'abm', 'well-known'].indexOf(base === 'tls' ? 'well-known' : base)
    return i < 0 ? 99 : i
  }
  return results.map((r, i) => ({ r, i })).sort((a, b) => rank(a.r.id) - rank(b.r.id) || a.i - b.i).map(({ r }) => r)
}
