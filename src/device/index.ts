/**
 * The device simulator as a library: a simulated Apple device (device.ts) that enrolls and checks in
 * through a `Transport`, the order a device follows (flow.ts), diagnosis of a failed step, and load mode.
 * Used by `npm run simulate` (src/cli/simulate.ts) and by the test suite (test/helpers/device.ts).
 */
export { SimulatedDevice, type AnsweredCommand, type Channel, type IdleResult, type SendOptions, type SimulatedDeviceOptions } from './device.js'
export { answerCommand, type CommandAnswer, type DeviceState } from './answers.js'
export { diagnose, type Diagnosis } from './diagnose.js'
export { enrollmentSteps, simulateEnrollment, type SimulationOptions, type SimulationReport, type StepRunner } from './flow.js'
export { checkLoadOptions, formatLoadTable, LOAD_LIMITS, runLoad, type LoadOptions, type LoadProgress, type LoadResult, type StepStats } from './load.js'
export { MODELS, type DeviceModel } from './models.js'
export { recordedEnrollBody, RECORDED_ENROLL_BODY_BASE64 } from './recorded-enroll-body.js'
export { devSignInSession, type SignInMethod, type WebAuthenticationRequest, type WebAuthenticationSession } from './sign-in.js'
export type { Enrollment } from '../protocol/profile-rules.js'
export { StepFailure, STEPS, type FailureFacts, type StepName, type StepResult } from './steps.js'
export { httpTransport, TransportError, type Transport, type TransportRequest, type TransportResponse } from './transport.js'
