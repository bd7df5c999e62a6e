/**
 * The order an iPhone (or iPad, Mac, Vision Pro) goes through account-driven enrollment, one step at a
 * time with its duration: discovery, the enroll 401, Enrollment SSO when offered, the sign-in, the
 * profile and its rules, SCEP, Authenticate, TokenUpdate (and a Mac's user channel), the command channel,
 * a declarative management sync, and CheckOut on request. `simulateEnrollment` runs it and returns the
 * report (the `simulate` command prints it); `enrollmentSteps` is the same sequence for load mode.
 */
import type { ModelFamily } from '../protocol/discovery.js'
import type { Enrollment } from '../protocol/profile-rules.js'
import { SimulatedDevice, type AnsweredCommand } from './device.js'
import { diagnose, type Diagnosis } from './diagnose.js'
import type { SignInMethod } from './sign-in.js'
import { StepFailure, STEPS, type StepName, type StepResult } from './steps.js'
import type { Transport, TransportResponse } from './transport.js'

export interface StepOutcome {
  summary?: string
  notes?: string[]
}

/** Runs one step: times it and records it; rethrows its failure so that the sequence stops. */
export type StepRunner = (step: StepName, run: () => Promise<StepOutcome>) => Promise<void>

export interface EnrollmentOptions {
  /** Where discovery is asked (`https://<domain>` or the server); not needed with `enrollUrl`. */
  server?: string
  /** Skip discovery and POST here. */
  enrollUrl?: string
  signIn: SignInMethod
}

/** Discovery through TokenUpdate (and a Mac's user channel): what makes an enrolled, active device. */
export async function enrollmentSteps(device: SimulatedDevice, options: EnrollmentOptions, run: StepRunner): Promise<void> {
  if (!options.enrollUrl) {
    if (!options.server) throw new Error('either server or enrollUrl')
    await run('discovery', async () => {
      const found = await device.discover(options.server!)
      const notes = found.redirects.map((r) => `redirected to ${r}`)
      if (found.enrollment === 'device' && !device.requestedEnrollment) {
        notes.push(`discovery answered ${found.version}: enrolling as account-driven device enrollment (an organisation-owned device, named by its UDID), as a device would; --enrollment device says so up front`)
      }
      return { summary: `${found.version} at ${found.baseUrl}`, notes }
    })
  }
  await run('enroll-challenge', async () => {
    const { challenge, esso } = await device.requestChallenge(options.enrollUrl ?? device.enrollUrl)
    const where = challenge.method === 'apple-as-web' ? challenge.url : challenge.authorizationUrl
    return { summary: `401 ${challenge.method} ${where}`, notes: esso ? [`${esso.developer ? 'X-Apple-MDM-ESSO-Developer' : 'X-Apple-MDM-ESSO'}: ${esso.url}`] : [] }
  })
  if (device.esso) {
    await run('esso', async () => {
      const checked = await device.checkEsso()
      return { summary: `${checked.mode} document obeys Apple's rules (${checked.declarations} declaration(s))`, notes: ['a real device would now install the SSO app and sign in through it; the simulator continues with the sign-in below'] }
    })
  }
  await run('sign-in', async () => ({ summary: await device.signIn(options.signIn) }))
  let profileBytes: Buffer | undefined
  await run('enroll', async () => {
    profileBytes = await device.fetchProfile()
    return { summary: `200, ${profileBytes.length} bytes` }
  })
  await run('profile', async () => {
    const profile = device.readProfile(profileBytes!)
    return { summary: `${String(profile.dict.PayloadIdentifier)} for ${profile.assignedManagedAppleId}, ServerURL ${profile.serverUrl}`, notes: profile.notes }
  })
  await run('scep', async () => {
    const identity = await device.scep()
    return { summary: `certificate ${identity.certificate.subject.replace(/\n/g, ', ')}, serial ${identity.certificate.serialNumber.slice(0, 16)}…`, notes: identity.notes }
  })
  await run('authenticate', async () => {
    await device.authenticate()
    const who = device.enrollment === 'device' ? `UDID ${device.udid}, serial number ${device.serialNumber}` : `EnrollmentID ${device.enrollmentId}`
    return { summary: `${who} (${device.model.productName}, ${device.model.platform} ${device.model.osVersion})` }
  })
  await run('token-update', async () => {
    await device.tokenUpdate('device')
    return { summary: `push token and PushMagic for topic ${device.topic}` }
  })
  if (device.model.userChannel) {
    await run('user-channel', async () => {
      await device.tokenUpdate('user')
      return { summary: `${device.enrollment === 'device' ? 'UserID' : 'EnrollmentUserID'} ${device.enrollmentUserId}` }
    })
  }
}

export interface SimulationOptions<R extends TransportResponse = TransportResponse> extends EnrollmentOptions {
  transport: Transport<R>
  /** What the user types in Settings. */
  user: string
  modelFamily?: ModelFamily
  /** `user` or `device` (account-driven device enrollment); unset: what discovery announces. */
  enrollment?: Enrollment
  selfSigned?: boolean
  notNow?: boolean
  checkout?: boolean
  /** After the first command session, keep checking in (an Idle every `idleIntervalSeconds`) for this long. */
  idleSeconds?: number
  idleIntervalSeconds?: number
  /** Runs after TokenUpdate, before the command channel: tests queue commands here. */
  beforeCommands?: (device: SimulatedDevice<R>) => Promise<void>
  onStepStart?: (step: StepName) => void
  onStepEnd?: (result: StepResult) => void
}

export interface SimulationReport {
  ok: boolean
  server?: string
  enrollUrl?: string
  user: string
  modelFamily: ModelFamily
  /** The enrollment the device went through (discovery's, or the one asked for). */
  enrollment: Enrollment
  /** What the server knows the device by: its EnrollmentID, or under device enrollment its UDID. */
  enrollmentId: string
  /** Device enrollment: the serial number it gave. */
  serialNumber?: string
  /** Destructive commands acknowledged and noted, not carried out (EraseDevice, DeviceLock). */
  noted: string[]
  steps: StepResult[]
  commands: AnsweredCommand[]
  declarations: string[]
  diagnosis?: Diagnosis
  /** The device, for callers that go on with it (tests). Not in the JSON report. */
  device: SimulatedDevice
}

export async function simulateEnrollment<R extends TransportResponse>(options: SimulationOptions<R>): Promise<SimulationReport> {
  const device = new SimulatedDevice<R>({ transport: options.transport, model: options.modelFamily, userIdentifier: options.user, enrollBody: options.selfSigned ? 'self-signed' : 'recorded', enrollment: options.enrollment })
  const steps: StepResult[] = []
  const commands: AnsweredCommand[] = []
  const run: StepRunner = async (step, body) => {
    options.onStepStart?.(step)
    const started = performance.now()
    try {
      const outcome = await body()
      const result: StepResult = { step, title: STEPS[step], ok: true, ms: Math.round(performance.now() - started), summary: outcome.summary, notes: outcome.notes ?? [] }
      steps.push(result)
      options.onStepEnd?.(result)
    } catch (err) {
      const failure = err instanceof StepFailure ? err : new StepFailure(step, { expected: 'the step to complete', got: `an error in the simulator: ${(err as Error).stack ?? String(err)}` })
      const result: StepResult = { step, title: STEPS[step], ok: false, ms: Math.round(performance.now() - started), notes: [], failure: failure.facts }
      steps.push(result)
      options.onStepEnd?.(result)
      throw failure
    }
  }

  let diagnosis: Diagnosis | undefined
  try {
    await enrollmentSteps(device as SimulatedDevice, options, run)
    await options.beforeCommands?.(device)
    let syncRequested = false
    await run('commands', async () => {
      const channels = device.model.userChannel ? (['device', 'user'] as const) : (['device'] as const)
      for (const channel of channels) {
        const session = await device.idle(channel, { notNow: options.notNow })
        commands.push(...session.answered)
        syncRequested ||= session.syncRequested
      }
      const deadline = Date.now() + (options.idleSeconds ?? 0) * 1000
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min((options.idleIntervalSeconds ?? 5) * 1000, Math.max(0, deadline - Date.now()))))
        const session = await device.idle('device', { notNow: options.notNow })
        commands.push(...session.answered)
        syncRequested ||= session.syncRequested
      }
      const summary = commands.length ? `${commands.length} command(s) answered` : 'Idle: no command queued'
      return { summary, notes: commands.map((c) => `${c.commandUuid} ${c.note}`) }
    })
    await run('declarative-sync', async () => {
      const sync = await device.declarativeSync()
      const why = syncRequested ? 'asked by a DeclarativeManagement command' : 'after enrollment'
      if (!sync.served) return { summary: 'not served', notes: sync.notes }
      return { summary: sync.held.size ? `${sync.held.size} declaration(s) applied (${why})` : `no declarations assigned to this team, nothing to apply (${why})`, notes: sync.notes }
    })
    if (options.checkout) await run('checkout', async () => (await device.checkOut(), { summary: 'the enrollment is checked out' }))
  } catch (err) {
    if (!(err instanceof StepFailure)) throw err
    diagnosis = diagnose(err, { server: options.server })
  }
  return {
    ok: !diagnosis,
    server: options.server,
    enrollUrl: device.enrollUrl,
    user: options.user,
    modelFamily: device.model.family,
    enrollment: device.enrollment,
    enrollmentId: device.deviceId,
    ...(device.enrollment === 'device' ? { serialNumber: device.serialNumber } : {}),
    noted: [...device.noted],
    steps,
    commands,
    declarations: [...device.declarations.keys()],
    diagnosis,
    device: device as SimulatedDevice,
  }
}
