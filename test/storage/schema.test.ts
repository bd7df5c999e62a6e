/**
 * The migrations are hand-written SQL; the Prisma client is generated from prisma/schema.prisma. This
 * proves the two agree: every model is a table, every scalar field a column of a compatible type and
 * the same nullability, nothing extra on either side, and every @unique / @@unique has a unique index.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase, type Database } from '../../src/storage/database.js'
import { migrate } from '../../src/storage/migrate.js'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'

interface Field {
  name: string
  column: string
  type: string
  optional: boolean
  list: boolean
  dbType?: string
  unique: boolean
}
interface Model {
  name: string
  table: string
  fields: Field[]
  uniques: string[][]
}

function parseSchema(text: string): Model[] {
  const enums = new Set([...text.matchAll(/^enum\s+(\w+)/gm)].map((m) => m[1]!))
  const blocks = [...text.matchAll(/^model\s+(\w+)\s*\{([\s\S]*?)^\}/gm)]
  const modelNames = new Set(blocks.map((b) => b[1]!))
  return blocks.map(([, name, body]) => {
    const fields: Field[] = []
    const uniques: string[][] = []
    let table = name!
    for (const raw of body!.split('\n')) {
      const line = raw.replace(/\/\/.*$/, '').trim()
      if (!line) continue
      const map = line.match(/^@@map\("([^"]+)"\)/)
      if (map) table = map[1]!
      const uq = line.match(/^@@unique\(\[([^\]]+)\]/)
      if (uq) uniques.push(uq[1]!.split(',').map((s) => s.trim()))
      if (line.startsWith('@@')) continue
      const m = line.match(/^(\w+)\s+(\w+)(\[\])?(\?)?(.*)$/)
      if (!m) continue
      const [, fname, type, list, optional, attrs] = m
      if (modelNames.has(type!)) continue // relation field, no column
      fields.push({
        name: fname!,
        column: attrs!.match(/@map\("([^"]+)"\)/)?.[1] ?? fname!,
        type: enums.has(type!) ? 'Enum' : type!,
        optional: Boolean(optional),
        list: Boolean(list),
        dbType: attrs!.match(/@db\.(\w+)/)?.[1],
        unique: /@unique\b/.test(attrs!) || /@id\b/.test(attrs!),
      })
    }
    return { name: name!, table, fields, uniques }
  })
}

const COMPATIBLE: Record<string, string[]> = {
  String: ['text', 'uuid', 'character varying'],
  Int: ['integer'],
  BigInt: ['bigint'],
  Boolean: ['boolean'],
  DateTime: ['timestamp with time zone', 'timestamp without time zone'],
  Bytes: ['bytea'],
  Json: ['jsonb', 'json'],
  Float: ['double precision'],
  Enum: ['USER-DEFINED', 'text'],
}

let database: TestDatabase
let db: Database
const models = parseSchema(readFileSync(new URL('../../prisma/schema.prisma', import.meta.url), 'utf8'))

beforeAll(async () => {
  database = await createTestDatabase()
  db = await openDatabase(database.options)
  const session = await db.openSession()
  await migrate(session)
  await session.close()
})
afterAll(async () => {
  await db.close()
  await database.drop()
})

describe('migrations match prisma/schema.prisma', () => {
  it('create exactly the tables of the models', async () => {
    const rows = await db.prisma.$queryRawUnsafe<{ table_name: string }[]>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'",
    )
    expect(rows.map((r) => r.table_name).sort()).toEqual(models.map((m) => m.table).sort())
  })

  it.each(models.map((m) => [m.name, m] as const))('model %s has exactly its columns, types and nullability', async (_name, model) => {
    const cols = await db.prisma.$queryRawUnsafe<{ column_name: string; data_type: string; is_nullable: string; udt_name: string }[]>(
      "SELECT column_name, data_type, is_nullable, udt_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
      model.table,
    )
    const byName = new Map(cols.map((c) => [c.column_name, c]))
    expect([...byName.keys()].sort()).toEqual(model.fields.map((f) => f.column).sort())
    for (const f of model.fields) {
      const col = byName.get(f.column)!
      const dataType = f.list ? col.udt_name.replace(/^_/, '') : col.data_type
      if (f.list) expect(col.data_type, `${model.table}.${f.column} is an array`).toBe('ARRAY')
      if (f.dbType === 'Uuid') expect(col.udt_name, `${model.table}.${f.column}`).toBe('uuid')
      else if (!f.list) expect(COMPATIBLE[f.type], `${model.table}.${f.column}: ${f.type} vs ${dataType}`).toContain(dataType)
      expect(col.is_nullable === 'YES', `${model.table}.${f.column} nullability`).toBe(f.optional)
    }
  })

  it.each(models.map((m) => [m.name, m] as const))('model %s has a unique index for every @unique and @@unique', async (_name, model) => {
    const indexes = await db.prisma.$queryRawUnsafe<{ columns: string[] }[]>(
      `SELECT array_agg(a.attname ORDER BY a.attname)::text[] AS columns
         FROM pg_index i
         JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)
        WHERE t.relname = $1 AND i.indisunique AND i.indpred IS NULL
        GROUP BY i.indexrelid`,
      model.table,
    )
    const have = new Set(indexes.map((i) => [...i.columns].sort().join(',')))
    const col = (name: string) => model.fields.find((f) => f.name === name)!.column
    const want = [...model.fields.filter((f) => f.unique).map((f) => [f.column]), ...model.uniques.map((u) => u.map(col))]
    for (const cols of want) expect(have, `${model.table} unique (${cols.join(', ')})`).toContain([...cols].sort().join(','))
  })
})
