// CPU and memory of a process and its children, read from /proc: what the bench scripts measure
// proxies and servers with.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The process and its children (NGINX and HAProxy workers): pids to sum CPU and memory over. */
export function family(pid) {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    try {
      const children = readFileSync(`/proc/${pids[i]}/task/${pids[i]}/children`, 'utf8').trim();
      if (children) pids.push(...children.split(/\s+/).map(Number));
    } catch {
      // Gone.
    }
  }
  return pids;
}

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** User + system seconds of `pid` and its children so far. */
export function cpuSeconds(pid) {
  let ticks = 0;
  for (const p of family(pid)) {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone.
    }
  }
  return ticks / TICKS;
}

/** Resident memory of `pid` and its children, bytes. */
export function rssBytes(pid) {
  let kb = 0;
  for (const p of family(pid)) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]);
    } catch {
      // Gone.
    }
  }
  return kb * 1024;
}
