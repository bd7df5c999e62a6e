/**
 * Wake-up pushes (PROTOCOL.md section 10). An MDM push carries no command: it asks the device to connect
 * and check in, and the device then fetches whatever is queued (Apple, "Sending MDM commands to a
 * device", https://developer.apple.com/documentation/devicemanagement/sending-mdm-commands-to-a-device).
 * So one push per channel is enough however many commands were queued around the same time: `notify`
 * coalesces. Every push goes through one ApnsClient (one HTTP/2 session per push certificate, reused, as
 * Apple asks of providers).
 *
 * Policy, by APNs answer (Apple, "Handling notification responses from APNs",
 * https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns):
 * - 200: delivered.
 * - 410 Unregistered, 400 BadDeviceToken: the token is dead; push_token_invalid_at is set and the channel
 *   gets no push until the device's next TokenUpdate brings a token (which clears it).
 * - 429, 5xx, timeouts, connection failures: retried with the client's backoff (DEFAULT_RETRY: five tries
 *   over a few seconds, full jitter). The first try's outcome is returned at once ("retrying") and the
 *   rest happen in the background.
 * - 403, topic errors, a TLS refusal, an expired certificate: config_error, logged as an error (no push
 *   can succeed until an administrator acts).
 * Every outcome is recorded on the channel (push_status, push_status_at, push_error) and logged as one line
 * naming the channel by its row id: never the push token or PushMagic.
 *
 * Without push credentials nothing is pushed and nothing is recorded: the start-up banner says once that
 * pushes are off, a status written on every channel at every notify would say the same thing thousands of
 * times, and it would be a write per queued command for no reader.
 */
import type { Config } from '../config/index.js'
import { ConflictError, NotFoundError } from '../errors.js'
import { ApnsClient, backoffDelay, DEFAULT_RETRY, type ApnsResult, type RetryPolicy } from '../push/apns.js'
import type { Db } from '../storage/database.js'
import { findEnrollmentPushTargets, findPushTarget, recordPushOutcome, type PushTarget } from '../storage/push.js'

/**
 * How long notify() gathers channels before pushing. Commands are usually queued in bursts (one request
 * queues several, or a bulk request many devices): a quarter second turns a burst into one push per
 * channel and is nothing next to the seconds a device takes to wake and connect. The window starts at
 * the first notify and is not extended by later ones, so a steady stream of commands still pushes.
 */
export const PUSH_COALESCE_MS = 250
/** Channels the queue pushes at once: each holds a database connection briefly and an HTTP/2 stream. */
const MAX_CONCURRENT_PUSHES = 16
/** The certificate lasts a year; warn this long before it expires (renewal needs the Apple Account that made it). */
const EXPIRY_WARNING_DAYS = 30
const DAY_MS = 86_400_000
/**
 * Enrollment states whose channels may be pushed. A removed enrollment is pushed too: its device keeps its
 * push token until it checks out, and a push brings it back to be told to unenroll (403
 * com.apple.unrecognized.device). A checked-out device left management and has no token.
 */
const LIVE = new Set(['authenticated', 'active', 'removed'])

export const PUSH_STATUSES = ['delivered', 'invalid_token', 'retrying', 'error', 'config_error', 'not_configured', 'no_push_token'] as const
export type PushStatus = (typeof PUSH_STATUSES)[number]

export interface PushOutcome {
  /** mdm_channels.channel_id: the EnrollmentID, or EnrollmentID:EnrollmentUserID for a macOS user channel. */
  channelId: string
  status: PushStatus
  apnsId?: string
  reason?: string
}

export interface PushService {
  /** True when APNs credentials are configured. */
  readonly configured: boolean
  /**
   * Ask these channels (mdm_channels.id) to check in. Coalesced: one push per channel however many
   * notify() calls arrive within PUSH_COALESCE_MS; returns at once. Errors are logged and recorded on the
   * channel, never thrown to the caller.
   */
  notify(channelIds: string[]): void
  /** Push now to every channel of an enrollment that can receive one; resolves with each outcome. */
  pushEnrollment(enrollmentId: string): Promise<PushOutcome[]>
  /** Resolves when nothing is queued or in flight (tests, shutdown). */
  idle(): Promise<void>
  close(): Promise<void>
}

type LogFn = (obj: object, msg: string) => void
export interface PushLogger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
}

export interface PushServiceDeps {
  db: Db
  config: Pick<Config, 'apns'>
  log: PushLogger
  /** How often and how patiently a retryable answer is retried (default DEFAULT_RETRY). */
  retry?: RetryPolicy
  now?: () => Date
}

export function createPushService(deps: PushServiceDeps): PushService {
  const { db, log } = deps
  const { credentials, url, ca } = deps.config.apns
  const policy = deps.retry ?? DEFAULT_RETRY
  const now = deps.now ?? (() => new Date())
  const summary = describePush(deps.config.apns, now())
  if (summary.warning) log.warn({ push: { topic: credentials?.topic, notAfter: credentials?.notAfter } }, summary.warning)
  else if (!credentials) log.info({}, "push not configured: commands wait for each device's next check-in; set APNS_CERT/APNS_KEY or APNS_P12")

  let client: ApnsClient | undefined
  const apns = () => (client ??= new ApnsClient({ url, identity: credentials!, ca }))

  let closed = false
  /** Notified within the current window, or while a push of theirs was under way. */
  const pending = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  /** Window closed, waiting for a free slot (a Set keeps insertion order: a FIFO without duplicates). */
  const ready = new Set<string>()
  let running = 0
  /** Channels with a push under way (attempt or backoff), and how many. */
  const active = new Map<string, number>()
  const waiters: (() => void)[] = []
  const sleepers = new Set<() => void>()

  const isIdle = () => !timer && pending.size === 0 && ready.size === 0 && active.size === 0
  const settle = () => {
    if (isIdle()) for (const w of waiters.splice(0)) w()
  }
  const schedule = () => {
    if (!timer && !closed && pending.size > 0) timer = setTimeout(flush, PUSH_COALESCE_MS)
  }

  function flush(): void {
    timer = undefined
    for (const id of pending) {
      // A push of this channel is under way and may have left before the command that asked for this
      // one was queued: push again when it ends (run's finally).
      if (active.has(id)) continue
      pending.delete(id)
      ready.add(id)
    }
    pump()
    settle()
  }

  function pump(): void {
    while (!closed && running < MAX_CONCURRENT_PUSHES && ready.size > 0) {
      const id = ready.values().next().value as string
      ready.delete(id)
      if (active.has(id)) {
        pending.add(id)
        continue
      }
      running++
      void run(id).done.finally(() => {
        running--
        pump()
        settle()
      })
    }
  }

  /** Pushes one channel, retrying in the background; `first` is the first try's outcome (null: no such channel). */
  function run(id: string, known?: PushTarget): { first: Promise<PushOutcome | null>; done: Promise<void> } {
    active.set(id, (active.get(id) ?? 0) + 1)
    let resolveFirst!: (o: PushOutcome | null) => void
    const first = new Promise<PushOutcome | null>((resolve) => (resolveFirst = resolve))
    const done = (async () => {
      for (let attempt = 1; ; attempt++) {
        const { outcome, again } = await pushOnce(id, attempt)
        if (attempt === 1) resolveFirst(outcome)
        if (!again || closed) return
        await pause(backoffDelay(attempt, policy))
        if (closed) return
      }
    })()
      .catch((err: unknown) => {
        log.error({ err, push: { channel: id } }, 'push failed')
        resolveFirst({ channelId: known?.channelId ?? '', status: 'error', reason: 'InternalError' })
      })
      .finally(() => {
        const n = active.get(id)! - 1
        if (n > 0) active.set(id, n)
        else active.delete(id)
        schedule()
        settle()
      })
    return { first, done }
  }

  /** One try: read the channel, push, record and log the outcome. `again`: worth another try. */
  async function pushOnce(id: string, attempt: number): Promise<{ outcome: PushOutcome | null; again: boolean }> {
    // Read afresh for every try: a TokenUpdate, CheckOut or 410 may have changed the channel meanwhile.
    const target = await findPushTarget(db, id)
    if (!target) {
      log.debug({ push: { channel: id } }, 'push skipped: no such channel')
      return { outcome: null, again: false }
    }
    const skip = unpushable(target)
    if (skip) {
      log.debug({ push: { channel: id, enrollment: target.mdmEnrollmentId, outcome: skip.status, reason: skip.reason } }, 'push skipped')
      return { outcome: skip, again: false }
    }
    if (!credentials) return { outcome: { channelId: target.channelId, status: 'not_configured' }, again: false }

    const at = now()
    let result: ApnsResult
    if (credentials.notAfter.getTime() <= at.getTime()) {
      // APNs would refuse the TLS handshake; say why without a doomed connection per push.
      result = { status: 0, reason: 'CertificateExpired', outcome: 'config_error' }
    } else if (target.topic !== credentials.topic) {
      // Enrolled with another topic (a placeholder before credentials were set, or another certificate):
      // APNs would refuse it (TopicDisallowed) for this channel only, and only a new enrollment fixes it.
      result = { status: 0, reason: 'TopicMismatch', detail: 'the device enrolled with another push topic and must enroll again', outcome: 'error' }
    } else {
      result = await apns().send({ token: target.pushToken!, pushMagic: target.pushMagic!, topic: target.topic })
    }

    const again = result.outcome === 'retry' && attempt < policy.attempts && !closed
    const status: PushStatus = result.outcome === 'retry' ? (again ? 'retrying' : 'error') : result.outcome
    const reason = result.reason ?? (result.status && result.status !== 200 ? `HTTP ${result.status}` : undefined)
    const outcome: PushOutcome = { channelId: target.channelId, status, ...(result.apnsId ? { apnsId: result.apnsId } : {}), ...(reason ? { reason } : {}) }

    const line = {
      push: {
        channel: id,
        enrollment: target.mdmEnrollmentId,
        outcome: status,
        apnsId: result.apnsId,
        reason,
        httpStatus: result.status || undefined,
        attempt,
        detail: result.detail,
      },
    }
    const message = status === 'error' && result.outcome === 'retry' ? `push error: gave up after ${attempt} tries` : `push ${status}`
    if (status === 'config_error') log.error(line, `${message}: no push can succeed until the push certificate or topic is fixed`)
    else if (status === 'delivered' || status === 'invalid_token') log.info(line, message)
    else log.warn(line, message)

    try {
      await recordPushOutcome(db, id, { status, error: reason ?? null, at, ...(status === 'invalid_token' ? { invalidToken: target.pushToken! } : {}) })
    } catch (err) {
      log.error({ err, push: { channel: id } }, 'push outcome not recorded')
    }
    return { outcome, again }
  }

  /** Waits, unless close() cuts it short. */
  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(t)
        sleepers.delete(wake)
        resolve()
      }
      const t = setTimeout(wake, ms)
      sleepers.add(wake)
    })
  }

  return {
    configured: credentials !== null,

    notify(channelIds) {
      if (!credentials || closed) return
      for (const id of channelIds) if (typeof id === 'string' && id) pending.add(id)
      schedule()
    },

    async pushEnrollment(enrollmentId) {
      const found = await findEnrollmentPushTargets(db, enrollmentId)
      if (!found) throw new NotFoundError(`no enrollment ${enrollmentId}`, { publicMessage: 'No such enrollment' })
      if (!LIVE.has(found.status)) {
        throw new ConflictError(`The enrollment is ${found.status}: the device left management and has no push token`, { code: 'enrollment_ended' })
      }
      if (!credentials) return found.channels.map((c) => ({ channelId: c.channelId, status: 'not_configured' as const }))
      return Promise.all(
        found.channels.map(async (c): Promise<PushOutcome> => {
          const skip = unpushable(c)
          if (skip) return skip
          if (closed) return { channelId: c.channelId, status: 'error', reason: 'ShuttingDown' }
          // This push leaves after whatever the waiting notifies were for: it answers them too.
          pending.delete(c.id)
          ready.delete(c.id)
          const outcome = await run(c.id, c).first
          return outcome ?? { channelId: c.channelId, status: 'no_push_token', reason: 'ChannelRemoved' }
        }),
      ).finally(settle)
    },

    idle() {
      return isIdle() ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))
    },

    async close() {
      if (closed) return
      closed = true
      clearTimeout(timer)
      timer = undefined
      const dropped = new Set([...pending, ...ready]).size
      pending.clear()
      ready.clear()
      if (dropped > 0) log.info({ push: { dropped } }, `push: shutting down before ${dropped} pushes; those devices get their commands at their next check-in`)
      // Backoffs end now; tries in flight finish (each within the client's timeout) and are recorded.
      for (const wake of [...sleepers]) wake()
      settle()
      await new Promise<void>((resolve) => (isIdle() ? resolve() : waiters.push(resolve)))
      await client?.close()
    },
  }
}

/** Why a channel cannot be pushed now, as the outcome to report; undefined when it can. */
function unpushable(c: PushTarget): PushOutcome | undefined {
  if (!LIVE.has(c.enrollmentStatus)) return { channelId: c.channelId, status: 'no_push_token', reason: 'EnrollmentEnded' }
  // Known dead since APNs said so; the next TokenUpdate clears this.
  if (c.pushTokenInvalidAt) return { channelId: c.channelId, status: 'invalid_token', reason: c.pushError ?? 'Unregistered' }
  if (!c.pushToken || !c.pushMagic) return { channelId: c.channelId, status: 'no_push_token' }
  return undefined
}

/**
 * What the start-up banner says about pushes, and the warning to repeat loudly when the certificate has
 * expired or expires within EXPIRY_WARNING_DAYS. The Apple Push Certificates Portal
 * (https://identity.apple.com) renews a certificate under the same topic; a certificate created anew has
 * another topic, and a profile's Topic never changes, so every enrolled device would have to enroll again.
 */
export function describePush(apns: Config['apns'], now: Date = new Date()): { line: string; warning?: string } {
  const c = apns.credentials
  if (!c) return { line: "Push (APNs)         not configured: commands wait for each device's next check-in; set APNS_CERT/APNS_KEY or APNS_P12" }
  const date = c.notAfter.toISOString().slice(0, 10)
  const line = `Push (APNs)         ${new URL(apns.url).host} topic ${c.topic}, certificate expires ${date}`
  const renew = 'renew it at https://identity.apple.com with the Apple Account that created it (renew, do not create a new one: a new certificate has another topic and every device would have to enroll again)'
  const left = c.notAfter.getTime() - now.getTime()
  if (left <= 0) return { line, warning: `The APNs push certificate expired on ${date}: APNs refuses every push, so devices get commands only when they check in by themselves; ${renew}` }
  if (left <= EXPIRY_WARNING_DAYS * DAY_MS) {
    const days = Math.ceil(left / DAY_MS)
    return { line, warning: `The APNs push certificate expires in ${days} day${days === 1 ? '' : 's'} (${date}); ${renew}` }
  }
  return { line }
}
