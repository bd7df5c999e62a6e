/**
 * Service discovery on each ENROLL_DOMAINS domain, asked as a device asks it (PROTOCOL.md section 1):
 * `GET https://<domain>/.well-known/com.apple.remotemanagement?user-identifier=...&model-family=...`.
 * Redirects are followed as the device follows them, and each must keep the query string (the device
 * does not add it again); the final answer must be JSON (an HTML error page ends the enrollment) naming
 * an enroll URL of this server, and, when the team exists in the database, the URL of the team that
 * domain maps to. A name this machine cannot resolve is skipped, not failed.
 */
import type { Config } from '../../config/index.js'
import { ADDE_VERSION, BYOD_VERSION } from '../../protocol/discovery.js'
import { serverUrls, type ServerUrls } from '../../protocol/urls.js'
import type { Database } from '../../storage/database.js'
import { findTeamNamed, teamOfUrl } from '../../storage/teams.js'
import { NetworkError, request, type NetOptions } from './net.js'
import { fail, ok, skipped, type Outcome } from './result.js'

const MAX_REDIRECTS = 5
const HELP = 'README "Deploying behind a TLS reverse proxy"'
const SERVE = `proxy the path to SERVER_URL, or redirect keeping the query string (nginx: return 307 https://<SERVER_URL host>$request_uri;) (${HELP})`

export async function checkWellKnown(domain: string, team: string | undefined, config: Config, db: Database | undefined, net: NetOptions): Promise<Outcome> {
  const userIdentifier = `doctor@${domain}`
  const family = config.enrollment.modelFamilies[0] ?? 'iPhone'
  let url = `https://${domain}/.well-known/com.apple.remotemanagement?user-identifier=${encodeURIComponent(userIdentifier)}&model-family=${family}`
  const hops: string[] = []
  for (let hop = 0; ; hop++) {
    let answer
    try {
      answer = await request(url, net, { headers: { accept: 'application/json' } })
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err
      if (err.kind === 'offline') return skipped(`${err.message}: no network here, or no DNS record for ${new URL(url).hostname}`, `run the doctor where the network reaches ${domain}`)
      if (err.kind === 'tls') return fail(`GET ${url}: ${err.message}; devices refuse it too`, `serve a certificate for ${new URL(url).hostname} from a public CA`)
      return fail(`GET ${url}: ${err.message}`, SERVE)
    }
    const via = hops.length ? ` (after ${hops.join(' -> ')})` : ''
    if (answer.status >= 300 && answer.status < 400) {
      const location = answer.headers.location
      if (!location) return fail(`${url} answers ${answer.status} without a Location${via}`, SERVE)
      const next = new URL(location, url)
      if (next.protocol !== 'https:') return fail(`${url} redirects to ${next.href}, plain http: devices only follow https`, SERVE)
      if (next.searchParams.get('user-identifier') !== userIdentifier) {
        return fail(`${url} redirects to ${next.href}, dropping the query string: the device does not send user-identifier again, so enrollment fails`, SERVE)
      }
      if (hop + 1 >= MAX_REDIRECTS) return fail(`more than ${MAX_REDIRECTS} redirects from https://${domain}/.well-known/com.apple.remotemanagement`, SERVE)
      hops.push(`${answer.status} ${next.host}`)
      url = next.href
      continue
    }
    const type = String(answer.headers['content-type'] ?? '')
    if (!/^application\/json\b/i.test(type)) {
      return fail(`${url} answers ${answer.status} ${type || 'without a content type'}${via}, not JSON: devices stop the enrollment (an HTML page means the path is not served)`, SERVE)
    }
    let body: unknown
    try {
      body = JSON.parse(answer.body.toString('utf8'))
    } catch {
      return fail(`${url} answers ${answer.status} with malformed JSON${via}`, SERVE)
    }
    if (answer.status === 403 && (body as { code?: unknown }).code === 'com.apple.well-known.failed') {
      return fail(`${url} refuses the doctor's test account${via}: ${String((body as { description?: unknown }).description)}`, `the server that answers must serve ${domain}: check its ENROLL_DOMAINS and ENROLL_MODEL_FAMILIES`)
    }
    if (answer.status !== 200) return fail(`${url} answers ${answer.status}${via}, not the discovery document`, SERVE)
    return judgeAnswer(body, domain, team, config, db, via)
  }
}

async function judgeAnswer(body: unknown, domain: string, team: string | undefined, config: Config, db: Database | undefined, via: string): Promise<Outcome> {
  const answer = discoveryBaseUrl(body)
  if (!answer) {
    return fail(`https://${domain}/.well-known/com.apple.remotemanagement answers JSON${via} that is not a discovery document ({"Servers":[{"Version":"${BYOD_VERSION}","BaseURL":...}]})`, SERVE)
  }
  const urls = serverUrls(config.serverUrl)
  if (!answer.baseUrl.startsWith(urls.enroll(''))) {
    return fail(`discovery on ${domain}${via} points at ${answer.baseUrl}, not at this server (${config.serverUrl})`, `make https://${domain}/.well-known/com.apple.remotemanagement reach the server at SERVER_URL, or correct SERVER_URL on the server that answers`)
  }
  const expected = team === undefined ? 'the Default team' : `team "${team}"`
  const mismatch = db ? await teamMismatch(db, urls, answer.baseUrl, team) : null
  if (mismatch) {
    return fail(`discovery on ${domain}${via} points at ${mismatch}, but ENROLL_DOMAINS maps ${domain} to ${expected}`, 'let the domain reach the server that uses this database, with the same ENROLL_DOMAINS')
  }
  return ok(`discovery on ${domain}${via} answers JSON pointing at this server (${answer.version}, ${expected})`)
}

/**
 * Compares `baseUrl` with the enroll URL this database holds for `team` (undefined: the Default team):
 * undefined when they match, null when the team does not exist yet (nothing to compare), else what
 * `baseUrl` names instead (another team, or one this database does not know).
 */
export async function teamMismatch(db: Database, urls: ServerUrls, baseUrl: string, team: string | undefined): Promise<string | null | undefined> {
  const expected = team === undefined ? await teamOfUrl(db.prisma, null) : await findTeamNamed(db.prisma, team)
  if (!expected) return null
  if (baseUrl === urls.enroll(expected.enrollmentToken)) return undefined
  const prefix = urls.enroll('')
  const actual = baseUrl.startsWith(prefix) ? await teamOfUrl(db.prisma, decodeURIComponent(baseUrl.slice(prefix.length))) : null
  return actual ? `team "${actual.name}"` : 'a team this database does not know (another server or database answers?)'
}

/** The enroll URL in a discovery answer, if it is one. */
export function discoveryBaseUrl(body: unknown): { version: string; baseUrl: string } | undefined {
  const servers = (body as { Servers?: unknown } | null)?.Servers
  const first = Array.isArray(servers) ? (servers[0] as { Version?: unknown; BaseURL?: unknown } | undefined) : undefined
  if (!first || typeof first.BaseURL !== 'string' || (first.Version !== BYOD_VERSION && first.Version !== ADDE_VERSION)) return undefined
  return { version: first.Version, baseUrl: first.BaseURL }
}
