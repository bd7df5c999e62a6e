/**
 * SERVER_URL: the base of every URL devices get (discovery answer, profile, SCEP, check-in). It must be
 * https (loadConfig refuses plain http except on a loopback address, which only this machine reaches),
 * and it must lead to this server: `GET /healthz` answers `{"status":"ok"}` through it, `/readyz` says
 * whether that server's database is ready, and, when the doctor can read the database, the server's
 * discovery answer names the enroll URL this database holds (not another instance's).
 *
 * Reachability, decided once: a SERVER_URL where nothing listens is a warning ("server not running"),
 * since the doctor is meant to run before the server goes live; a name this machine cannot resolve or
 * reach is skipped (the doctor may run inside a network that cannot see the public name); a TLS failure,
 * a redirect, or an answer from something other than this server is a failure, because devices would
 * fail the same way.
 */
import type { Config } from '../../config/index.js'
import { isLoopbackHost, serverUrls } from '../../protocol/urls.js'
import type { Database } from '../../storage/database.js'
import { NetworkError, request, type NetOptions } from './net.js'
import { fail, ok, skipped, warn, type Outcome } from './result.js'
import { discoveryBaseUrl, teamMismatch } from './well-known.js'

const PROXY_HELP = 'README "Deploying behind a TLS reverse proxy"'

export function checkServerUrlScheme(config: Config): Outcome {
  const url = new URL(config.serverUrl)
  const production = `for production put a TLS reverse proxy in front (${PROXY_HELP}) and set SERVER_URL to its public https:// URL`
  if (url.protocol !== 'https:') {
    return warn(`${config.serverUrl} is plain http on a loopback address: only this machine reaches it, and Apple devices enroll only over https`, production)
  }
  if (isLoopbackHost(url.hostname)) return warn(`${config.serverUrl} is a loopback address: only this machine reaches it`, production)
  return ok(`${config.serverUrl} is https`)
}

export async function checkServerReachable(config: Config, net: NetOptions, db: Database | undefined): Promise<Outcome> {
  const url = new URL(config.serverUrl)
  const loopback = isLoopbackHost(url.hostname)
  const healthz = `${config.serverUrl}/healthz`
  let answer
  try {
    answer = await request(healthz, net)
  } catch (err) {
    if (!(err instanceof NetworkError)) throw err
    if (err.kind === 'refused') {
      return loopback
        ? warn(`server not running: ${err.message}`, 'start it (npm start) and run the doctor again to check the whole path')
        : warn(`server not running, or its proxy: ${err.message}`, `start the server and its TLS proxy (${PROXY_HELP}), then run the doctor again`)
    }
    if (err.kind === 'offline') return skipped(`${err.message}: no network here, or no DNS record for ${url.hostname}`, `run the doctor where the network reaches ${url.hostname}, and check its DNS record`)
    if (err.kind === 'tls') {
      const fix = err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' ? `terminate TLS there (${PROXY_HELP})` : `serve a certificate for ${url.hostname} from a public CA, with its intermediates (${PROXY_HELP})`
      return fail(`GET ${healthz}: ${err.message}; devices refuse it too`, fix)
    }
    return fail(`GET ${healthz}: ${err.message}`)
  }
  const location = answer.headers.location
  if (answer.status >= 300 && answer.status < 400) {
    return fail(`GET ${healthz} redirects (${answer.status}) to ${location ?? '(no Location)'}: devices do not follow redirects on the URLs built from SERVER_URL`, 'set SERVER_URL to the URL the proxy serves directly')
  }
  if ([502, 503, 504].includes(answer.status) && !isOurHealth(answer.body)) {
    return warn(`GET ${healthz} answered ${answer.status}: the proxy answers, the server behind it does not (not running?)`, 'start the server, and check the proxy forwards to its HOST:PORT')
  }
  if (answer.status !== 200 || !isOurHealth(answer.body)) {
    return fail(`GET ${healthz} answered ${answer.status} ${answer.headers['content-type'] ?? ''}, not this server's {"status":"ok"}: SERVER_URL leads elsewhere`.replace(/ +,/g, ','), `make the proxy forward ${url.host} to this server (${PROXY_HELP})`)
  }

  // The server runs; /readyz adds whether its database is ready (it answers 503 until then).
  try {
    const ready = await request(`${config.serverUrl}/readyz`, net)
    if (ready.status !== 200) {
      const status = jsonField(ready.body, 'status') ?? `HTTP ${ready.status}`
      return warn(`${config.serverUrl} reaches the server, but /readyz says ${status}`, 'see the database line, and the server log')
    }
  } catch {
    // /healthz answered a moment ago; a failure here says nothing new.
  }
  if (!db) return ok(`GET ${healthz} reaches a byod-mdm server, and /readyz says it is ready`)

  // Is it this server? Its discovery answer must name the enroll URL this database holds for the team.
  const mapped = config.enrollment.domains?.[0]
  const probe = mapped?.domain ?? 'example.com'
  const urls = serverUrls(config.serverUrl)
  const query = `user-identifier=${encodeURIComponent(`doctor@${probe}`)}&model-family=${config.enrollment.modelFamilies[0] ?? 'iPhone'}`
  let found: { baseUrl: string } | undefined
  try {
    const answer = await request(`${urls.discovery}?${query}`, net)
    found = answer.status === 200 ? discoveryBaseUrl(parseJson(answer.body)) : undefined
  } catch {
    found = undefined
  }
  const mismatch = found ? await teamMismatch(db, urls, found.baseUrl, mapped?.team) : null
  if (mismatch) {
    return fail(
      `${config.serverUrl} reaches a byod-mdm server whose discovery answer for ${probe} names ${mismatch}: it does not run with this database and configuration`,
      'point SERVER_URL (its proxy) at the server processes that share this database, SERVER_SECRET and ENROLL_DOMAINS',
    )
  }
  return ok(`GET ${healthz} reaches ${mismatch === undefined ? 'this server (its discovery answer matches this database)' : 'a byod-mdm server'}, and /readyz says it is ready`)
}

function isOurHealth(body: Buffer): boolean {
  return jsonField(body, 'status') === 'ok'
}

function jsonField(body: Buffer, field: string): string | undefined {
  const value = (parseJson(body) as Record<string, unknown> | undefined)?.[field]
  return typeof value === 'string' ? value : undefined
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}
