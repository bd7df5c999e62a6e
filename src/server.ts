/**
 * The process: parse configuration, build the app, listen, print what an administrator needs, and shut
 * down gracefully on SIGTERM/SIGINT (stop accepting, finish in-flight requests, close the database).
 * With WORKERS > 1 the first process only supervises the workers that do this (workers.ts).
 */
import v8 from 'node:v8'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config/index.js'
import { describePush } from './services/push.js'
import { isFirstWorker, isWorkerProcess, reportListening, runSupervisor } from './workers.js'

const SHUTDOWN_GRACE_MS = 15_000

async function main(): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  // WORKERS > 1: this process supervises that many workers (workers.ts), each running the rest of main.
  if (!isWorkerProcess() && config.workers > 1) {
    runSupervisor(config)
    return
  }

  // Prisma's query compiler is a WebAssembly module, and so is the embedded database (PGlite); V8 compiles
  // WebAssembly twice (baseline, then optimized), which kept about 50 MB more resident per process on
  // Postgres and made Prisma's queries no faster (the check-in path does not use Prisma), and 70 MB more
  // with PGlite (idle after start 286 -> 211 MB) for 15% more check-ins per second on the embedded
  // database, which is for trials. Set before either module is compiled (docs/deploy.md#memory).
  v8.setFlagsFromString('--liftoff-only')
  // Under sustained load V8 let the old generation grow to about four times what survives a full
  // collection before collecting it (the Idle benchmark: 177 MB of heap for 56 MB live, 277 MB resident);
  // growing by a quarter instead keeps the heap near what it holds (peak resident 277 -> 184 MB), for
  // about the same requests per second: the collections it adds are incremental (docs/deploy.md#memory).
  // V8 reads it each time it sets the next limit, so setting it here takes effect.
  v8.setFlagsFromString('--heap-growing-percent=25')

  let app: Awaited<ReturnType<typeof buildApp>> | undefined
  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    // Still starting: nothing is in flight, and migrations run in transactions.
    if (!app) process.exit(0)
    const started = app
    started.log.info({ signal }, 'shutting down: finishing in-flight requests')
    const timer = setTimeout(() => {
      started.log.error('shutdown took too long; exiting')
      process.exit(1)
    }, SHUTDOWN_GRACE_MS)
    timer.unref()
    started.close().then(
      () => process.exit(0),
      (err) => {
        started.log.error({ err }, 'error during shutdown')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))

  try {
    app = await buildApp(config)
  } catch (err) {
    // Checks that need the database or the keys (Enrollment SSO documents, stored keys) end the same way.
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  if (closing) return

  await app.listen({ port: config.port, host: config.host })
  reportListening()
  // Under a supervisor, the first worker prints the banner for all.
  if (isWorkerProcess() && !isFirstWorker()) return

  const u = app.urls
  const token = app.defaultTeam.enrollmentToken
  const lines = [
    `${config.orgName}: account-driven enrollment server ready (${config.database.kind === 'pglite' ? `embedded database in ${config.dataDir}` : 'Postgres'}${config.workers > 1 ? `, ${config.workers} worker processes` : ''})`,
    `  Service discovery   ${u.discovery}`,
    `                      (serve this path on the domain of your users' accounts, e.g. https://company.com/.well-known/com.apple.remotemanagement)`,
    `  Enroll (Default)    ${u.enroll(token)}`,
    `  SSO page (Default)  ${u.ssoPage(token)}`,
    `  SCEP                ${u.scep}`,
    `  Check-in / commands ${u.mdm}`,
  ]
  lines.push(
    config.sso.saml
      ? `  SAML SP metadata    ${u.ssoMetadata}  (register it at your IdP ${config.sso.saml.idp.entityId})`
      : '  Sign-in             development sign-in (no IdP configured: anyone can sign in as any email address)',
  )
  const push = describePush(config.apns)
  lines.push(`  ${push.line}`)
  // Also logged as a warning by the push service; repeated here where the administrator is looking.
  if (push.warning) lines.push(`  WARNING: ${push.warning}`)
  const abm = await app.services.abm.status()
  lines.push(
    abm.connected
      ? `  Apple Business Mgr  connected: ${abm.account?.server_name ?? abm.serverUuid} (${abm.account?.org_name ?? 'organisation unknown'}), token expires ${abm.tokenExpiresAt?.toISOString().slice(0, 10)}${abm.discovery ? `, discovery URL registered` : ''}`
      : '  Apple Business Mgr  not connected (optional: see README "Apple Business Manager")',
  )
  if (abm.warning) lines.push(`  WARNING: ${abm.warning}`)
  if (!config.serverUrl.startsWith('https://')) {
    lines.push(`  Note: SERVER_URL is ${config.serverUrl}: only this machine can reach it, and Apple devices only enroll over https. Put a TLS reverse proxy in front and set SERVER_URL.`)
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  app.log.info({ urls: { discovery: u.discovery, enroll: u.enroll(token), sso: u.ssoPage(token), scep: u.scep, mdm: u.mdm } }, 'server ready')
}

main().catch((err) => {
  process.stderr.write(`fatal: ${err instanceof Error ? err.message : String(err)}\n`)
  if (err instanceof Error && err.cause) process.stderr.write(`  cause: ${(err.cause as Error).message ?? String(err.cause)}\n`)
  process.exit(1)
})
