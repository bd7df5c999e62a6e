/**
 * What every benchmark needs around the processes it measures: waiting until a server answers, stopping
 * it, and reading its memory from /proc (Linux). A free port comes from test/helpers/ports.
 */
import type { ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

export async function waitFor(url: string, child: ChildProcess, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${url}: the server exited with ${child.exitCode}`)
    try {
      const res = await fetch(url)
      if (res.ok) return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`${url} did not come up within ${timeoutMs} ms`)
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
  })
}

export interface Memory {
  /** Resident now, MiB. */
  rss: number
  /** Peak resident since the process started (VmHWM), MiB. */
  peak: number
}

/** A process's resident memory from /proc/<pid>/status; undefined where there is no /proc. */
export function memoryOf(pid: number): Memory | undefined {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) }
}

/** The pids of a process's children (node:cluster workers), from /proc. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat; 0 where there is no /proc. */
export function cpuMsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the command), in clock ticks (100 Hz).
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return 0
  }
}

/**
 * CPU time (ms) of every process of this name (`postgres`: the server's backends, its writer and
 * autovacuum) by pid, from /proc; empty where there is none.
 */
export function cpuOfCommand(name: string): Map<number, number> {
  const out = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === name) out.set(Number(entry), cpuMsOf(Number(entry)))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

/** CPU (ms) those processes used since `before` (a process that exited in between is not counted). */
export function cpuSince(name: string, before: Map<number, number>): number {
  let total = 0
  for (const [pid, ms] of cpuOfCommand(name)) total += ms - (before.get(pid) ?? 0)
  return total
}
