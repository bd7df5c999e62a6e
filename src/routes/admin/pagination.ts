/**
 * Lists in the admin API: newest first, `{"items": [...], "next_cursor": ...}`, keyset-paginated by
 * (created_at, id) so a page is one index range however far into the list it is. The cursor is opaque
 * to clients (Base64url of the last row's key).
 */
import { z } from 'zod'
import { BadRequestError } from '../../errors.js'

export interface PageKey {
  createdAt: Date
  id: string
}

export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(500).default(100).describe('items per page (1-500)'),
  cursor: z.string().max(200).optional().describe('next_cursor of the previous page'),
}

export function encodeCursor(key: PageKey): string {
  return Buffer.from(JSON.stringify([key.createdAt.toISOString(), key.id])).toString('base64url')
}

export function decodeCursor(cursor: string | undefined): PageKey | undefined {
  if (cursor === undefined) return undefined
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string]
    const createdAt = new Date(at)
    if (Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id)) throw new Error('bad cursor')
    return { createdAt, id }
  } catch {
    throw new BadRequestError('cursor is not one this API handed out', { code: 'invalid_request' })
  }
}

/** `rows` fetched with `limit + 1`: the page and the cursor of the next one. */
export function page<T extends PageKey, U>(rows: T[], limit: number, view: (row: T) => U): { items: U[]; next_cursor: string | null } {
  const items = rows.slice(0, limit)
  return { items: items.map(view), next_cursor: rows.length > limit ? encodeCursor(items.at(-1)!) : null }
}

export const listOf = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item), next_cursor: z.string().nullable() })

/** The error body of every admin endpoint. */
export const errorBody = z.object({ error: z.string(), message: z.string() })
