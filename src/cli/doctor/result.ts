/** What one check of `npm run doctor` found, and how it is printed: one line per check. */

/**
 * - ok: as a production deployment needs it.
 * - warn: works, but not as production needs it (or soon will not); the server starts.
 * - fail: broken: the server refuses to start, or devices will fail. The doctor exits non-zero.
 * - skipped: could not be checked here (not configured, no network, or an earlier check failed).
 */
export type Status = 'ok' | 'warn' | 'fail' | 'skipped'

export interface CheckResult {
  /** Stable identifier: `database`, `apns`, `well-known:example.com`, ... */
  id: string
  /** What was checked, as printed. */
  label: string
  status: Status
  /** What was found; for `skipped`, why not. */
  message: string
  /** What to do about it. */
  fix?: string
}

export type Outcome = Omit<CheckResult, 'id' | 'label'>

export const ok = (message: string, fix?: string): Outcome => ({ status: 'ok', message, fix })
export const warn = (message: string, fix?: string): Outcome => ({ status: 'warn', message, fix })
export const fail = (message: string, fix?: string): Outcome => ({ status: 'fail', message, fix })
export const skipped = (message: string, fix?: string): Outcome => ({ status: 'skipped', message, fix })

/** Status order, worst last: combining outcomes keeps the worst. */
const RANK: Record<Status, number> = { skipped: 0, ok: 1, warn: 2, fail: 3 }
export const worse = (a: Status, b: Status): Status => (RANK[a] >= RANK[b] ? a : b)

const LABEL_WIDTH = 30

/** `label ....... ok    message Fix: ...`; a skipped check reads `skipped: <reason>`. */
export function formatLine(r: CheckResult): string {
  const label = `${r.label} `.padEnd(LABEL_WIDTH, '.')
  const body = r.status === 'skipped' ? `skipped: ${r.message}` : `${r.status.padEnd(4)}  ${r.message}`
  return `${label} ${body}${r.fix ? ` Fix: ${r.fix}` : ''}`
}

export function summary(results: CheckResult[]): string {
  const count = (s: Status) => results.filter((r) => r.status === s).length
  const n = { ok: count('ok'), warn: count('warn'), fail: count('fail'), skipped: count('skipped') }
  const verdict = n.fail ? 'not ready: fix the failures above' : n.warn ? 'no failures; the warnings say what a production deployment still needs' : 'ready'
  return `${n.ok} ok, ${n.warn} warning${n.warn === 1 ? '' : 's'}, ${n.fail} failure${n.fail === 1 ? '' : 's'}, ${n.skipped} skipped: ${verdict}`
}

const DAY_MS = 86_400_000

/** Certificates are replaced before they expire: warn this long before (as the APNs banner does). */
export const EXPIRY_WARNING_DAYS = 30

export const isoDate = (d: Date) => d.toISOString().slice(0, 10)

/**
 * Where `now` falls in a certificate's validity: `fail` before notBefore or after notAfter, `warn`
 * within EXPIRY_WARNING_DAYS of notAfter. `text` completes "the certificate ...".
 */
export function validity(cert: { validFrom: string; validTo: string }, now: Date): { status: Status; text: string; notAfter: Date } {
  const notBefore = new Date(cert.validFrom)
  const notAfter = new Date(cert.validTo)
  if (notBefore.getTime() > now.getTime()) return { status: 'fail', text: `is not valid before ${isoDate(notBefore)}`, notAfter }
  const left = notAfter.getTime() - now.getTime()
  if (left <= 0) return { status: 'fail', text: `expired on ${isoDate(notAfter)}`, notAfter }
  if (left <= EXPIRY_WARNING_DAYS * DAY_MS) {
    const days = Math.ceil(left / DAY_MS)
    return { status: 'warn', text: `expires in ${days} day${days === 1 ? '' : 's'} (${isoDate(notAfter)})`, notAfter }
  }
  return { status: 'ok', text: `is valid until ${isoDate(notAfter)}`, notAfter }
}

/** The CN of an X509Certificate subject (`CN=...` line), else the whole subject on one line. */
export function commonName(subject: string): string {
  const cn = subject.split('\n').find((l) => l.startsWith('CN='))
  return cn ? cn.slice(3) : subject.replace(/\n/g, ', ')
}
