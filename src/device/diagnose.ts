/**
 * The paragraph an administrator reads when a step fails: which step, what a device expected, what came
 * back (status, the server's error code and message, or the network error) and the most likely fix.
 * The step's own idea of the fix wins; otherwise the fix follows from the kind of failure.
 */
import { STEPS, type FailureFacts, type StepFailure, type StepName } from './steps.js'

export interface Diagnosis extends FailureFacts {
  step: StepName
  title: string
  /** One paragraph, for people. */
  text: string
}

export interface DiagnosisContext {
  /** The server as the simulator reached it (`--server`), when given. */
  server?: string
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|EPROTO/

export function diagnose(failure: StepFailure, context: DiagnosisContext = {}): Diagnosis {
  const facts = failure.facts
  const fix = facts.fix ?? likelyFix(failure.step, facts, context)
  const title = STEPS[failure.step]
  const text = `${capitalize(title)} failed: a device expects ${facts.expected}, and got ${facts.got}.${fix ? ` Most likely: ${fix}` : ''}`
  return { ...facts, fix, step: failure.step, title, text }
}

function likelyFix(step: StepName, facts: FailureFacts, context: DiagnosisContext): string | undefined {
  if (facts.networkCode) {
    const url = safeUrl(facts.url)
    const reached = safeUrl(context.server)
    if (url && reached && url.origin !== reached.origin && step !== 'discovery') {
      return `SERVER_URL is ${url.origin} but you reached the server at ${reached.origin}: the URLs the server hands out (enroll, sign-in, SCEP, check-in) are built from SERVER_URL and must be reachable from the device. Set SERVER_URL to the address devices use (the https:// name of your reverse proxy) and restart the server.`
    }
    const where = url ? url.origin : 'the server'
    if (facts.networkCode === 'ECONNREFUSED') return `nothing listens at ${where}: start the server (npm start) or correct ${step === 'discovery' ? '--server' : 'SERVER_URL'}.`
    if (facts.networkCode === 'ENOTFOUND' || facts.networkCode === 'EAI_AGAIN') return `the name ${url?.hostname ?? ''} does not resolve from here: check DNS${step === 'discovery' ? ' and --server' : ' and SERVER_URL'}.`
    if (facts.networkCode === 'ETIMEDOUT' || facts.networkCode === 'UND_ERR_CONNECT_TIMEOUT') return `${where} does not answer in time: a firewall drops the traffic, or the server is overloaded.`
    if (TLS_CODES.test(facts.networkCode)) {
      return `the TLS certificate of ${where} is not trusted here (${facts.networkCode}). Devices need a certificate from a public CA, TLS 1.2 or newer; to try a private CA with the simulator, set NODE_EXTRA_CA_CERTS to its certificate.`
    }
    return `the connection to ${where} failed (${facts.networkCode}).`
  }
  switch (facts.status) {
    case 429:
      return 'the server rate-limits this address: ENROLL_RATE_LIMIT (discovery and enroll), SSO_RATE_LIMIT (sign-in pages), OAUTH2_RATE_LIMIT (token endpoint), per client address per minute. Behind a proxy set TRUST_PROXY so each device counts separately; for load tests raise the limits.'
    case 503:
      return 'the server cannot reach its database or the identity provider right now; its log says which. Devices retry.'
    case 413:
      return 'a proxy or the server refused the body size (nginx: client_max_body_size).'
    case 502:
    case 504:
      return 'a reverse proxy in front of the server got no good answer from it: is the server running behind it?'
  }
  if (facts.status !== undefined && facts.status >= 500) return "the server failed on this request: its log has the line with the reason (search for the request's time or the error)."
  return undefined
}

function safeUrl(value: string | undefined): URL | undefined {
  if (!value) return undefined
  try {
    return new URL(value)
  } catch {
    return undefined
  }
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1)
}
