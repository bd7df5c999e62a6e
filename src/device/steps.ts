/**
 * The steps of an enrollment as a device goes through them, and how one fails: a `StepFailure` carries
 * the facts (what was expected, what came back: status, the server's error code and message, or the
 * network error) from which diagnose.ts writes the paragraph an administrator reads.
 */
import { TransportError, type TransportResponse } from './transport.js'

export const STEPS = {
  discovery: 'service discovery',
  'enroll-challenge': 'enroll, first POST (401 challenge)',
  esso: 'Enrollment SSO document',
  'sign-in': 'sign-in',
  enroll: 'enroll, second POST (profile)',
  profile: 'profile signature and keys',
  scep: 'SCEP',
  authenticate: 'Authenticate',
  'token-update': 'TokenUpdate',
  'user-channel': 'user channel TokenUpdate',
  commands: 'Idle and commands',
  'declarative-sync': 'declarative management sync',
  checkout: 'CheckOut',
} as const

export type StepName = keyof typeof STEPS

export interface FailureFacts {
  /** What a device needs here, e.g. "200 with a CMS-signed profile". */
  expected: string
  /** What came back, in a few words. */
  got: string
  status?: number
  /** The server's error code and message, when it sent them. */
  errorCode?: string
  serverMessage?: string
  /** The URL asked, and the network error code when there was no HTTP answer. */
  url?: string
  networkCode?: string
  /** The step's own idea of the fix, when it knows better than the generic rules of diagnose.ts. */
  fix?: string
}

export class StepFailure extends Error {
  constructor(
    readonly step: StepName,
    readonly facts: FailureFacts,
  ) {
    super(`${STEPS[step]}: expected ${facts.expected}; got ${facts.got}`)
    this.name = 'StepFailure'
  }
}

/** A step's outcome as the report shows it. */
export interface StepResult {
  step: StepName
  title: string
  ok: boolean
  ms: number
  /** One line: what the step found (the enroll URL, the certificate's subject, ...). */
  summary?: string
  /** Worth knowing, not failures: profile warnings, answered commands, ... */
  notes: string[]
  failure?: FailureFacts
}

/** What the server said about an error, whatever protocol's form it used. */
export function serverError(res: TransportResponse): { errorCode?: string; serverMessage?: string } {
  const type = res.headers['content-type'] ?? ''
  const text = res.body.toString('utf8')
  if (/json/.test(type) || /^\s*\{/.test(text)) {
    try {
      const j = JSON.parse(text) as Record<string, unknown>
      const code = str(j.error) ?? str(j.code)
      const message = str(j.message) ?? str(j.error_description) ?? str(j.description)
      return { errorCode: code, serverMessage: message }
    } catch {
      // not JSON after all
    }
  }
  if (/html/.test(type)) {
    const m = /<p id="error-message">([^<]*)<\/p>/.exec(text) ?? /<p>([^<]{1,300})<\/p>/.exec(text)
    return { serverMessage: m ? unescapeHtml(m[1]!) : undefined }
  }
  const line = text.trim().split('\n')[0]
  return { serverMessage: line ? line.slice(0, 300) : undefined }
}

/** `status error_code: message` for the report. */
export function describeResponse(res: TransportResponse): string {
  const { errorCode, serverMessage } = serverError(res)
  const parts = [`${res.status}`]
  if (errorCode) parts.push(errorCode)
  return serverMessage ? `${parts.join(' ')}: ${serverMessage}` : parts.join(' ')
}

/** The facts of an unexpected HTTP answer. */
export function responseFacts(res: TransportResponse, expected: string, url: string, fix?: string): FailureFacts {
  return { expected, got: describeResponse(res), status: res.status, ...serverError(res), url, fix }
}

/** The facts of a request that got no HTTP answer. */
export function networkFacts(err: TransportError, expected: string): FailureFacts {
  return { expected, got: `no answer from ${err.url} (${err.code}: ${err.message})`, url: err.url, networkCode: err.code }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

function unescapeHtml(s: string): string {
  return s.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c))).replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
}

/** The likely cause of a check-in or command-channel answer other than 200. */
export function checkinFix(res: TransportResponse): string | undefined {
  const text = res.body.toString('utf8')
  if (res.status === 401) return 'the server asks the user to sign in again (WWW-Authenticate on check-in): the token was revoked or expired, the user was deactivated, or REAUTH_AFTER passed'
  if (res.status === 403 && /com\.apple\.unrecognized\.device/.test(text)) return 'the server told the device to unenroll: the enrollment was removed by an administrator'
  if (res.status === 403) return 'the server does not accept the device identity (Mdm-Signature and certificate): the server log has the reason'
  if (res.status === 415) return 'the server does not take this Content-Type on ServerURL'
  return undefined
}
