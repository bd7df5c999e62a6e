/**
 * `npm run simulate -- --server <url> --user <email> [options]` (or `node dist/cli/simulate.js`): does
 * what an iPhone does to enroll, step by step with durations, and says which step fails and why. Load
 * mode (`--devices N`) enrolls many devices and prints a table per step. See `--help`.
 *
 * Arguments are read with node:util parseArgs: a dozen flags do not justify a dependency.
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { checkLoadOptions, formatLoadTable, httpTransport, runLoad, simulateEnrollment, type LoadProgress, type SignInMethod, type SimulationReport, type StepResult, type WebAuthenticationSession } from '../device/index.js'
import { MODELS } from '../device/models.js'
import { USER_ENROLLMENT_FAMILIES, type ModelFamily } from '../protocol/discovery.js'
import { ENROLLMENT, isLoopback, type Enrollment } from '../protocol/profile-rules.js'

const USAGE = `Usage: npm run simulate -- --server <url> --user <email> [options]
       node dist/cli/simulate.js --server <url> --user <email> [options]

Enrolls a simulated Apple device the way an iPhone does (service discovery, the enroll 401, sign-in,
the profile and its rules, SCEP, Authenticate, TokenUpdate, the command channel, a declarative
management sync) and prints each step with its duration. Exit code 0 when every step succeeded;
otherwise 1, with a diagnosis naming the step, what came back and the most likely fix.

  --server <url>            where the device asks service discovery: https://<domain of the user's
                            account>, or the server itself (http://localhost:8080)
  --enroll-url <url>        skip discovery and enroll at this URL (the server's banner prints it)
  --user <email>            the account the user types in Settings (required)

Sign-in (one of):
  --sign-in dev             fill in the server's development sign-in form (no IdP configured)
  --token <access token>    an access token from a real IdP session
  (neither)                 prints the URL to open in a browser, then waits for you to paste the
                            apple-remotemanagement-user-login: URL the browser ends on

Device:
  --enrollment <kind>       user: user enrollment (mdm-byod, a personal device, named by EnrollmentID);
                            device: account-driven device enrollment (mdm-adde, an organisation-owned
                            device: UDID and serial number, takes EraseDevice, DeviceLock, ...; the
                            simulator acknowledges those and erases or locks nothing). Default: what
                            discovery answers (the team's enrollment_type, or ENROLL_DEVICE_TEAMS);
                            user enrollment with --enroll-url. Asking for the other kind than the
                            server's is a failure that names the team setting
  --model-family <family>   iPhone (default), iPad, Mac (also opens a user channel), RealityDevice
  --self-signed             sign the enroll request with a stand-in key instead of sending the
                            recorded Apple-signed iPhone body (for ENROLL_DEVICE_SIGNATURE=log)
  --not-now                 answer every command NotNow
  --idle <seconds>          after enrolling, keep checking in for this long (queue commands meanwhile)
  --checkout                send CheckOut at the end (the enrollment ends)
  --timeout <seconds>       per request (default 30)
  --json                    print a machine-readable report instead

Load mode (development sign-in; users user<i>@<domain of --user>):
  --devices <N>             enroll N devices, then keep them checking in
  --concurrency <C>         at most C requests in flight (default 4)
  --duration <seconds>      how long they keep checking in (default: one check-in each)
  --i-own-this-server       needed for a server that is not on a loopback address
  -h, --help                this text
`

class UsageError extends Error {}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      server: { type: 'string' },
      'enroll-url': { type: 'string' },
      user: { type: 'string' },
      'sign-in': { type: 'string' },
      token: { type: 'string' },
      'model-family': { type: 'string' },
      enrollment: { type: 'string' },
      'self-signed': { type: 'boolean' },
      'not-now': { type: 'boolean' },
      idle: { type: 'string' },
      checkout: { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      devices: { type: 'string' },
      concurrency: { type: 'string' },
      duration: { type: 'string' },
      'i-own-this-server': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  return values
}

type Args = ReturnType<typeof parse>

function number(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${name} must be a non-negative number`)
  return n
}

function absoluteUrl(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined
  try {
    const url = new URL(value)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error()
    return value.replace(/\/+$/, '')
  } catch {
    throw new UsageError(`${name} must be an http(s) URL`)
  }
}

async function main(argv: string[]): Promise<number> {
  let args: Args
  try {
    args = parse(argv)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (args.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const server = absoluteUrl(args.server, '--server')
  const enrollUrl = absoluteUrl(args['enroll-url'], '--enroll-url')
  if (!server && !enrollUrl) throw new UsageError('--server (or --enroll-url) is required')
  const user = args.user
  if (!user || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(user)) throw new UsageError('--user must be an account name such as alice@example.com')
  const family = (args['model-family'] ?? 'iPhone') as ModelFamily
  if (!(USER_ENROLLMENT_FAMILIES as readonly string[]).includes(family)) throw new UsageError(`--model-family must be one of ${USER_ENROLLMENT_FAMILIES.join(', ')}`)
  const enrollment = args.enrollment as Enrollment | undefined
  if (enrollment !== undefined && !Object.hasOwn(ENROLLMENT, enrollment)) throw new UsageError('--enrollment takes "user" (mdm-byod) or "device" (mdm-adde)')
  if (args['sign-in'] !== undefined && args['sign-in'] !== 'dev') throw new UsageError('--sign-in takes "dev" (for a real IdP use --token, or neither to sign in in a browser)')
  if (args['sign-in'] && args.token) throw new UsageError('--sign-in dev and --token exclude each other')
  const transport = httpTransport({ timeoutMs: number(args.timeout, '--timeout', 30) * 1000 })

  if (args.devices !== undefined) return load(args, { server, enrollUrl, user, family, enrollment, transport })

  const signIn: SignInMethod = args.token ? { kind: 'token', token: args.token } : args['sign-in'] === 'dev' ? { kind: 'dev' } : { kind: 'browser', session: pasteSession(Boolean(args.json)) }
  const json = Boolean(args.json)
  const out = (line: string) => {
    if (!json) process.stdout.write(`${line}\n`)
  }
  const model = MODELS[family]
  const kind = enrollment ? ` by ${ENROLLMENT[enrollment].name}` : ''
  out(`Simulating ${model.productName} (${model.platform} ${model.osVersion}) enrolling ${user}${kind}${server ? ` via ${server}` : ''}${enrollUrl ? ` at ${enrollUrl}` : ''}`)
  const report = await simulateEnrollment({
    transport,
    server,
    enrollUrl,
    user,
    modelFamily: family,
    enrollment,
    signIn,
    selfSigned: args['self-signed'],
    notNow: args['not-now'],
    checkout: args.checkout,
    idleSeconds: number(args.idle, '--idle', 0),
    onStepEnd: (result) => out(formatStep(result)),
  })
  if (json) {
    const { device: _device, ...rest } = report
    process.stdout.write(`${JSON.stringify(rest, null, 2)}\n`)
  } else {
    out('')
    out(report.ok ? summaryLine(report) : `FAILED at ${report.diagnosis!.title}.\n\n${wrap(report.diagnosis!.text, 100)}`)
  }
  return report.ok ? 0 : 1
}

function formatStep(r: StepResult): string {
  const mark = r.ok ? 'ok  ' : 'FAIL'
  const title = r.title.padEnd(36)
  const ms = `${r.ms} ms`.padStart(8)
  const lines = [`  ${mark} ${title}${ms}  ${r.ok ? (r.summary ?? '') : (r.failure?.got ?? '')}`]
  for (const note of r.notes) lines.push(`${' '.repeat(8)}- ${note}`)
  return lines.join('\n')
}

function summaryLine(report: SimulationReport): string {
  const total = report.steps.reduce((a, s) => a + s.ms, 0)
  const checkedOut = report.steps.some((s) => s.step === 'checkout')
  const id = report.enrollment === 'device' ? `device enrollment, UDID ${report.enrollmentId}, serial number ${report.serialNumber}` : `EnrollmentID ${report.enrollmentId}`
  const noted = report.noted.length ? ` Acknowledged and not carried out: ${report.noted.join(', ')}.` : ''
  return `All ${report.steps.length} steps passed in ${total} ms: ${report.user} ${checkedOut ? 'enrolled and checked out' : 'is enrolled'} (${id}).${noted}`
}

function wrap(text: string, width: number): string {
  const words = text.split(' ')
  const lines: string[] = []
  let line = ''
  for (const w of words) {
    if (line && line.length + w.length + 1 > width) {
      lines.push(line)
      line = w
    } else line = line ? `${line} ${w}` : w
  }
  if (line) lines.push(line)
  return lines.join('\n')
}

/** The interactive web authentication session: print the URL, read the callback URL from stdin. */
function pasteSession(json: boolean): WebAuthenticationSession {
  return async (request) => {
    const say = (s: string) => (json ? process.stderr : process.stdout).write(s)
    say(
      request.method === 'apple-as-web'
        ? `\nOpen this sign-in page in a browser and sign in as ${request.userIdentifier}:\n\n  ${request.url}\n\n`
        : `\nOpen this authorization URL in a browser and sign in as ${request.userIdentifier}:\n\n  ${request.url}\n\n`,
    )
    say(`The browser ends on a ${request.callbackScheme}: URL it cannot open (look in the address bar, or in the\ndeveloper tools' network tab for the last redirect). Paste it here and press Enter:\n> `)
    const rl = createInterface({ input: process.stdin, terminal: false })
    try {
      const line = await new Promise<string>((resolve) => {
        rl.once('line', resolve)
        rl.once('close', () => resolve(''))
      })
      return line.trim()
    } finally {
      rl.close()
    }
  }
}

async function load(args: Args, base: { server?: string; enrollUrl?: string; user: string; family: ModelFamily; enrollment?: Enrollment; transport: ReturnType<typeof httpTransport> }): Promise<number> {
  const options = { devices: number(args.devices, '--devices', 1), concurrency: number(args.concurrency, '--concurrency', 4), durationSeconds: number(args.duration, '--duration', 0) }
  const invalid = checkLoadOptions(options)
  if (invalid) throw new UsageError(invalid)
  for (const target of [base.server, base.enrollUrl]) {
    if (target && !isLoopback(new URL(target).hostname) && !args['i-own-this-server']) {
      throw new UsageError(`load mode sends ${options.devices} enrollments to ${new URL(target).origin}, which is not a loopback address: add --i-own-this-server if it is yours`)
    }
  }
  if (args.token) throw new UsageError('load mode signs each device in with the development sign-in (--sign-in dev); --token is one sign-in for one device')
  const domain = base.user.slice(base.user.lastIndexOf('@') + 1)
  const controller = new AbortController()
  const stop = () => controller.abort()
  process.once('SIGINT', stop)
  const tty = process.stderr.isTTY && !args.json
  let last = 0
  const onProgress = (p: LoadProgress) => {
    if (!tty || (Date.now() - last < 100 && p.phase === 'enroll' && p.enrolled + p.failed < p.devices)) return
    last = Date.now()
    process.stderr.write(`\r${progressBar(p)}\x1b[K`)
  }
  if (!args.json) process.stdout.write(`Load: ${options.devices} devices (user<i>@${domain}), concurrency ${options.concurrency}, check-ins for ${options.durationSeconds} s, against ${base.server ?? base.enrollUrl}\n`)
  const result = await runLoad({ transport: base.transport, server: base.server, enrollUrl: base.enrollUrl, domain, modelFamily: base.family, enrollment: base.enrollment, selfSigned: args['self-signed'], signal: controller.signal, onProgress, ...options })
  process.removeListener('SIGINT', stop)
  if (tty) process.stderr.write('\r\x1b[K')
  if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  else {
    process.stdout.write(`\n${formatLoadTable(result)}\n`)
    if (result.firstError) process.stdout.write(`first error: ${result.firstError}\n`)
  }
  const errors = result.steps.some((s) => Object.keys(s.errors).length > 0)
  return result.enrolled === result.devices && !errors ? 0 : 1
}

function progressBar(p: LoadProgress): string {
  const width = 30
  if (p.phase === 'enroll') {
    const done = p.enrolled + p.failed
    const filled = Math.round((done / p.devices) * width)
    return `enrolling  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${p.devices}${p.failed ? ` (${p.failed} failed)` : ''}  ${(p.elapsedMs / 1000).toFixed(1)} s`
  }
  return `checking in  ${p.checkins} sessions, ${((p.remainingMs ?? 0) / 1000).toFixed(0)} s left`
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`simulate: ${err.message}\n\n${USAGE}`)
      process.exitCode = 2
      return
    }
    process.stderr.write(`simulate: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  },
)
