import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU accounting from /proc (Linux, servers on this machine): how many CPU seconds PostgreSQL, Redis and this
 * process's finished children (the CLI runs, pgbench) used between two snapshots, and how busy the whole machine
 * was. On a machine whose cores are saturated, throughput is CPU per unit of work: these figures say where it goes.
 * Every field is null where it cannot be read (no /proc, or a server on another machine).
 */
export interface CpuSnapshot {
  /** `performance.now()` when taken. */
  readonly at: number;
  /** PostgreSQL: the postmaster and every process it started, plus what its finished children used. */
  readonly postgres: number | null;
  readonly redis: number | null;
  /** This process's finished and reaped children (utime + stime of the dead). */
  readonly children: number | null;
  /** Busy, stolen (by the hypervisor, for other guests) and total CPU seconds of the machine, from /proc/stat. */
  readonly machineBusy: number | null;
  readonly machineSteal: number | null;
  readonly machineTotal: number | null;
}

/** CPU seconds used between two snapshots. */
export interface CpuUsage {
  readonly seconds: number;
  readonly postgres: number | null;
  readonly redis: number | null;
  readonly children: number | null;
  /** Share of the machine's CPU time that was busy (0..1), stolen time included. */
  readonly machineBusyShare: number | null;
  /** Share of the machine's CPU time stolen by the hypervisor (0..1): CPU this machine did not get. */
  readonly machineStealShare: number | null;
}

/** Where the servers run, as /proc sees them: PIDs found once per bench run. */
export interface ServerProcesses {
  /** The postmaster's PID, or null when PostgreSQL is not a process of this machine. */
  readonly postmaster: number | null;
  readonly redis: number | null;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * A process's /proc stat: its command name, and the fields after it (index 1 ppid, 11 utime, 12 stime, 13 cutime,
 * 14 cstime).
 */
function readStat(pid: number | 'self'): { command: string; fields: string[] } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name may hold spaces and parentheses: it ends at the last ')'
    const end = stat.lastIndexOf(')');
    return { command: stat.slice(stat.indexOf('(') + 1, end), fields: stat.slice(end + 2).split(' ') };
  } catch {
    return null;
  }
}

function ticks(fields: readonly string[], ...indexes: number[]): number {
  return indexes.reduce((sum, index) => sum + Number(fields[index]), 0);
}

/** User + system CPU seconds a live process has used so far; null when it is gone (or there is no /proc). */
export function processCpuSeconds(pid: number): number | null {
  const stat = readStat(pid);
  return stat ? ticks(stat.fields, 11, 12) / TICKS_PER_SECOND : null;
}

/**
 * The postmaster's PID: the parent of `backendPid`, a live backend of the caller's own connection
 * (`select pg_backend_pid()`). Null when that PID is not a PostgreSQL process of this machine (a remote server).
 */
export function postmasterOf(backendPid: number): number | null {
  const backend = readStat(backendPid);
  if (backend?.command !== 'postgres') return null;
  const parent = Number(backend.fields[1]);
  return Number.isInteger(parent) && readStat(parent)?.command === 'postgres' ? parent : null;
}

/** The redis-server process behind `serverInfo` (the text of `INFO server`), when it runs on this machine; else null. */
export function redisProcessOf(serverInfo: string): number | null {
  const pid = Number(/process_id:(\d+)/.exec(serverInfo)?.[1]);
  return Number.isInteger(pid) && readStat(pid)?.command.startsWith('redis-server') ? pid : null;
}

function postgresTicks(postmaster: number): number | null {
  // A backend that exits while /proc is scanned is in neither the scan nor the postmaster's cutime read before it:
  // read the postmaster again after the scan, and scan again when a child was reaped meanwhile.
  for (let attempt = 0; ; attempt += 1) {
    const before = readStat(postmaster)?.fields;
    if (!before) return null;
    let children = 0;
    let entries: string[];
    try {
      entries = readdirSync('/proc');
    } catch {
      return null;
    }
    for (const entry of entries) {
      if (entry.charCodeAt(0) > 57) continue; // not a PID
      const fields = readStat(Number(entry))?.fields;
      if (fields && Number(fields[1]) === postmaster) children += ticks(fields, 11, 12);
    }
    const after = readStat(postmaster)?.fields;
    if (!after) return null;
    const reaped = ticks(after, 13, 14) !== ticks(before, 13, 14);
    // the postmaster itself, the backends and helpers alive now, and those that have exited (reaped by it)
    if (!reaped || attempt >= 4) return ticks(after, 11, 12, 13, 14) + children;
  }
}

function machineTicks(): { busy: number; steal: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy
    const total = values.slice(0, 8).reduce((sum, value) => sum + value, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    return { busy: total - idle, steal: values[7] ?? 0, total };
  } catch {
    return null;
  }
}

/** A snapshot of the CPU used so far; without `servers` (or with null PIDs) the server parts are null. */
export function cpuSnapshot(servers?: ServerProcesses): CpuSnapshot {
  const self = readStat('self')?.fields;
  const machine = machineTicks();
  const pg = servers?.postmaster == null ? null : postgresTicks(servers.postmaster);
  return {
    at: performance.now(),
    postgres: pg === null ? null : pg / TICKS_PER_SECOND,
    redis: servers?.redis == null ? null : processCpuSeconds(servers.redis),
    children: self ? ticks(self, 13, 14) / TICKS_PER_SECOND : null,
    machineBusy: machine ? machine.busy / TICKS_PER_SECOND : null,
    machineSteal: machine ? machine.steal / TICKS_PER_SECOND : null,
    machineTotal: machine ? machine.total / TICKS_PER_SECOND : null,
  };
}

export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): CpuUsage {
  const delta = (a: number | null, b: number | null): number | null =>
    a === null || b === null ? null : Math.max(0, b - a);
  const busy = delta(before.machineBusy, after.machineBusy);
  const steal = delta(before.machineSteal, after.machineSteal);
  const total = delta(before.machineTotal, after.machineTotal);
  return {
    seconds: (after.at - before.at) / 1000,
    postgres: delta(before.postgres, after.postgres),
    redis: delta(before.redis, after.redis),
    children: delta(before.children, after.children),
    // (the tick counts are in seconds already: a fully busy machine's quotient may round to just over 1)
    machineBusyShare: busy === null || !total ? null : Math.min(1, busy / total),
    machineStealShare: steal === null || !total ? null : Math.min(1, steal / total),
  };
}
