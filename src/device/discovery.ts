/**
 * Service discovery as the device runs it (PROTOCOL.md section 1): GET the well-known URL with
 * `user-identifier` and `model-family`, follow redirects without adding the query again (a redirect that
 * drops it shows here as the server's refusal), and read one server: `mdm-byod` (user enrollment) or
 * `mdm-adde` (account-driven device enrollment). A device enrolls the way discovery says; the simulator
 * does too unless told to expect one, and then names the team setting that decides it.
 */
import { discoveryRequestUrl, readWellKnownResponse, type ModelFamily } from '../protocol/discovery.js'
import { ENROLLMENT, enrollmentOfVersion, type Enrollment } from '../protocol/profile-rules.js'
import { networkFacts, responseFacts, StepFailure } from './steps.js'
import { TransportError, type Transport, type TransportResponse } from './transport.js'

export interface Discovered {
  version: string
  /** The enrollment `version` announces. */
  enrollment: Enrollment
  baseUrl: string
  /** Each redirect followed, in order. */
  redirects: string[]
}

export async function discover(transport: Transport, base: string, userIdentifier: string, family: ModelFamily, userAgent: string, expected?: Enrollment): Promise<Discovered> {
  let url = discoveryRequestUrl(base, userIdentifier, family)
  const redirects: string[] = []
  let res: TransportResponse
  for (;;) {
    try {
      res = await transport.request('GET', url, { headers: { accept: 'application/json', 'user-agent': userAgent } })
    } catch (err) {
      if (err instanceof TransportError) throw new StepFailure('discovery', networkFacts(err, 'a JSON answer'))
      throw err
    }
    const location = res.headers.location
    if (res.status >= 300 && res.status < 400 && location) {
      if (redirects.length >= 5) throw new StepFailure('discovery', { expected: 'at most 5 redirects', got: 'more', url })
      url = new URL(location, url).toString()
      redirects.push(url)
      continue
    }
    break
  }
  const type = res.headers['content-type'] ?? ''
  if (res.status !== 200) {
    const domain = userIdentifier.slice(userIdentifier.lastIndexOf('@') + 1)
    const fix =
      res.status === 403
        ? `the server refuses ${userIdentifier} on a ${family}: ENROLL_DOMAINS must list the domain ${domain} (or be unset) and ENROLL_MODEL_FAMILIES must include ${family}; behind a redirect, it must keep the query string`
        : res.status === 404 || /html/.test(type)
          ? 'the discovery path is not served here: proxy /.well-known/com.apple.remotemanagement to this server with its query string (README, "Deploying behind a TLS reverse proxy"), or use --enroll-url'
          : undefined
    throw new StepFailure('discovery', responseFacts(res, '200 JSON {"Servers":[{"Version":"mdm-byod","BaseURL":...}]}', url, fix))
  }
  let json: unknown
  try {
    json = JSON.parse(res.body.toString('utf8'))
  } catch {
    throw new StepFailure('discovery', { expected: 'JSON', got: `${type || 'no content type'}: ${res.body.toString('utf8').slice(0, 80)}`, status: 200, url, fix: "something other than this server answers the discovery path (a web server's page?)" })
  }
  const read = readWellKnownResponse(json)
  if ('problem' in read) throw new StepFailure('discovery', { expected: '{"Servers":[{"Version":"mdm-byod","BaseURL":...}]}', got: read.problem, status: 200, url })
  const enrollment = enrollmentOfVersion(read.version)
  if (!enrollment) {
    throw new StepFailure('discovery', { expected: `Version ${ENROLLMENT.user.version} or ${ENROLLMENT.device.version}`, got: `Version ${read.version}`, status: 200, url, fix: 'a device knows only these two Versions and cancels on any other' })
  }
  if (expected && enrollment !== expected) {
    throw new StepFailure('discovery', {
      expected: `Version ${ENROLLMENT[expected].version} (${ENROLLMENT[expected].name}, --enrollment ${expected})`,
      got: `Version ${read.version} (${ENROLLMENT[enrollment].name})`,
      status: 200,
      url,
      fix: mismatchFix(userIdentifier, expected, enrollment),
    })
  }
  return { ...read, enrollment, redirects }
}

/** The team setting that decides the enrollment, and how to change it (or what to ask for instead). */
export function mismatchFix(userIdentifier: string, expected: Enrollment, got: Enrollment): string {
  const domain = userIdentifier.slice(userIdentifier.lastIndexOf('@') + 1)
  const setting =
    expected === 'device'
      ? 'set its enrollment_type to device (PATCH /api/v1/admin/teams/<id> {"enrollment_type":"device"}) or add its name to ENROLL_DEVICE_TEAMS and restart'
      : 'set its enrollment_type to user (PATCH /api/v1/admin/teams/<id> {"enrollment_type":"user"}), and remove its name from ENROLL_DEVICE_TEAMS if it is listed there'
  return `the team that enrolls ${domain} accounts (ENROLL_DOMAINS) has enrollment_type ${got}: ${setting}; or enroll with --enrollment ${got}.`
}
