import { readdirSync, readFileSync } from 'node:fs';

/**
 * Sends `signal` to everything a command started; `pid` is the command's pid.
 * Must not throw (a tree that is gone already is not an error).
 */
export type SignalTree = (pid: number, signal: NodeJS.Signals) => void;

/** The default {@link SignalTree}: the command leads its own process group, and the group is signalled. */
export const signalProcessGroup: SignalTree = (pid, signal) => {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
};

/**
 * True while a process of group `pgid` is alive. Zombies do not count: on a
 * host whose init does not reap orphans, a dead member stays a zombie for ever.
 */
export function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    // EPERM: members run as another user (root under sudo); they are alive.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}

/**
 * Ends the tree of the command `pid` leads: SIGTERM, up to `graceMs` for its
 * process group to empty, then SIGKILL, and up to `afterKillMs` more. Resolves
 * once the group is empty or the time is up (a process stuck in the kernel
 * outlives even SIGKILL for a while; the caller goes on regardless).
 */
export async function endProcessTree(pid: number, signalTree: SignalTree, graceMs: number, afterKillMs = 5_000): Promise<void> {
  if (!processGroupAlive(pid)) return;
  signalTree(pid, 'SIGTERM');
  if (await groupEmptyWithin(pid, graceMs)) return;
  signalTree(pid, 'SIGKILL');
  await groupEmptyWithin(pid, afterKillMs);
}

async function groupEmptyWithin(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!processGroupAlive(pgid)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(100, deadline - Date.now()))));
  }
}
