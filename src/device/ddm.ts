/**
 * A declarative management sync as a device runs it over check-in (PROTOCOL.md section 9): `tokens`,
 * `declaration-items`, each declaration whose ServerToken the device does not hold yet, then a `status`
 * report naming what it holds. Declarations an Enrollment SSO document handed the device must come back
 * with the same Identifier and ServerToken, or a device removes them (PROTOCOL.md section 5).
 */
import type { Declaration } from '../protocol/declarations.js'
import { readDeclarationItems, readTokensResponse } from '../protocol/declarations.js'
import { responseFacts, StepFailure } from './steps.js'
import type { TransportResponse } from './transport.js'

export interface SyncResult {
  declarationsToken: string
  /** Every declaration held after the sync, by Identifier. */
  held: Map<string, Declaration>
  fetched: number
  /** False when the server does not speak declarative management at all (tokens answered 4xx). */
  served: boolean
  notes: string[]
}

/** One DeclarativeManagement check-in: `Endpoint`, and `Data` for the status report. */
export type DdmCheckin = (endpoint: string, data?: Uint8Array) => Promise<{ res: TransportResponse; url: string }>

export async function declarativeSync(checkin: DdmCheckin, held: Map<string, Declaration>, expected: Declaration[] = []): Promise<SyncResult> {
  const notes: string[] = []
  const json = async (endpoint: string) => {
    const { res, url } = await checkin(endpoint)
    if (res.status !== 200) return { res, url, body: undefined }
    try {
      return { res, url, body: JSON.parse(res.body.toString('utf8')) as unknown }
    } catch {
      throw new StepFailure('declarative-sync', { expected: `JSON from ${endpoint}`, got: res.body.toString('utf8').slice(0, 120), status: 200, url })
    }
  }

  const tokens = await json('tokens')
  if (tokens.res.status >= 400 && tokens.res.status < 500 && tokens.res.status !== 401 && tokens.res.status !== 403) {
    return { declarationsToken: '', held, fetched: 0, served: false, notes: [`the server does not serve declarative management (tokens: ${tokens.res.status})`] }
  }
  if (!tokens.body) throw new StepFailure('declarative-sync', responseFacts(tokens.res, '200 JSON with SyncTokens', tokens.url))
  const t = readTokensResponse(tokens.body)
  if ('problem' in t) throw new StepFailure('declarative-sync', { expected: 'SyncTokens.DeclarationsToken', got: t.problem, status: 200, url: tokens.url })

  const listing = await json('declaration-items')
  if (!listing.body) throw new StepFailure('declarative-sync', responseFacts(listing.res, '200 JSON with Declarations', listing.url))
  const items = readDeclarationItems(listing.body)
  if ('problem' in items) throw new StepFailure('declarative-sync', { expected: 'Declarations and DeclarationsToken', got: items.problem, status: 200, url: listing.url })
  if (items.declarationsToken !== t.declarationsToken) {
    throw new StepFailure('declarative-sync', {
      expected: `declaration-items with the DeclarationsToken of tokens (${t.declarationsToken})`,
      got: items.declarationsToken,
      status: 200,
      url: listing.url,
      fix: 'tokens and declaration-items disagree: the device syncs again and again',
    })
  }

  const next = new Map<string, Declaration>()
  let fetched = 0
  for (const item of items.items) {
    const have = held.get(item.Identifier)
    if (have && have.ServerToken === item.ServerToken) {
      next.set(item.Identifier, have)
      continue
    }
    const got = await json(item.endpoint)
    if (!got.body) throw new StepFailure('declarative-sync', responseFacts(got.res, `200 JSON for ${item.endpoint} (it is listed in declaration-items)`, got.url))
    const d = got.body as Partial<Declaration>
    if (d.Identifier !== item.Identifier || d.ServerToken !== item.ServerToken || typeof d.Type !== 'string' || typeof d.Payload !== 'object') {
      throw new StepFailure('declarative-sync', {
        expected: `${item.endpoint} with Identifier ${item.Identifier} and ServerToken ${item.ServerToken}`,
        got: `Identifier ${String(d.Identifier)}, ServerToken ${String(d.ServerToken)}, Type ${String(d.Type)}`,
        status: 200,
        url: got.url,
      })
    }
    next.set(item.Identifier, d as Declaration)
    fetched++
  }
  for (const e of expected) {
    const served = next.get(e.Identifier)
    if (!served || served.ServerToken !== e.ServerToken) {
      throw new StepFailure('declarative-sync', {
        expected: `the Enrollment SSO declaration ${e.Identifier} with ServerToken ${e.ServerToken}`,
        got: served ? `ServerToken ${served.ServerToken}` : 'not served',
        fix: 'a device removes Enrollment SSO declarations the server does not serve identically after enrollment (PROTOCOL.md section 5)',
      })
    }
  }

  // The status report a device sends after applying: what it holds, all active and valid.
  const byKind = (kind: string) =>
    [...next.values()].filter((d) => d.Type.split('.')[2] === kind).map((d) => ({ identifier: d.Identifier, 'server-token': d.ServerToken, active: true, valid: 'valid' }))
  const report = {
    StatusItems: { management: { declarations: { activations: byKind('activation'), configurations: byKind('configuration'), assets: byKind('asset'), management: byKind('management') } } },
    Errors: [],
  }
  const status = await checkin('status', new Uint8Array(Buffer.from(JSON.stringify(report))))
  if (status.res.status !== 204 && status.res.status !== 200) throw new StepFailure('declarative-sync', responseFacts(status.res, '204 to the status report', status.url))
  notes.push(`${next.size} declaration(s) held, ${fetched} fetched; DeclarationsToken ${t.declarationsToken.slice(0, 12)}…`)
  return { declarationsToken: t.declarationsToken, held: next, fetched, served: true, notes }
}
