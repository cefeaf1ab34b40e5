// A DNS server of the tests' own on 127.0.0.1 (UDP, dns-packet): A, AAAA and SRV records the test
// changes while fairway resolves them, and faults (SERVFAIL, silence) to turn on and off.

import { createSocket } from 'node:dgram';
import type { ExecutionContext } from 'ava';
import dnsPacket from 'dns-packet';

export interface SrvTarget {
  target: string;
  port: number;
  weight?: number;
  priority?: number;
}

export interface DnsServer {
  /** host:port, for `resolver.servers`. */
  address: string;
  /** Sets a name's A and AAAA records (an address with ":" is AAAA); none = the name exists with no address. */
  setAddresses(name: string, addresses: string[], ttl?: number): void;
  setSrv(name: string, targets: SrvTarget[], ttl?: number): void;
  /** `servfail`: every answer is SERVFAIL; `silent`: no answer at all; undefined: answers again. */
  fault(kind?: 'servfail' | 'silent'): void;
  /** Queries received so far for `name` (any type). */
  queries(name: string): number;
  /** Resolves once `count` more queries for `name` have arrived than when it was called. */
  nextQueries(name: string, count?: number): Promise<void>;
}

const NXDOMAIN = 3;
const SERVFAIL = 2;

export async function startDnsServer(t: ExecutionContext): Promise<DnsServer> {
  const records = new Map<string, { A: { address: string; ttl: number }[]; AAAA: { address: string; ttl: number }[]; SRV: (SrvTarget & { ttl: number })[] }>();
  const counts = new Map<string, number>();
  const waiters = new Set<{ name: string; at: number; resolve: () => void }>();
  let fault: 'servfail' | 'silent' | undefined;
  const entry = (name: string) => {
    const key = name.toLowerCase();
    let r = records.get(key);
    if (!r) records.set(key, (r = { A: [], AAAA: [], SRV: [] }));
    return r;
  };
  const socket = createSocket('udp4');
  socket.on('message', (message, peer) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    counts.set(name, (counts.get(name) ?? 0) + 1);
    for (const waiter of waiters) {
      if (waiter.name === name && (counts.get(name) ?? 0) >= waiter.at) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
    if (fault === 'silent') return;
    const known = records.get(name);
    let flags = dnsPacket.AUTHORITATIVE_ANSWER;
    const answers: dnsPacket.Answer[] = [];
    if (fault === 'servfail') flags |= SERVFAIL;
    else if (!known) flags |= NXDOMAIN;
    else if (question.type === 'A' || question.type === 'AAAA') {
      for (const { address, ttl } of known[question.type]) answers.push({ type: question.type, name: question.name, ttl, data: address });
    } else if (question.type === 'SRV') {
      for (const s of known.SRV) answers.push({ type: 'SRV', name: question.name, ttl: s.ttl, data: { target: s.target, port: s.port, weight: s.weight ?? 1, priority: s.priority ?? 0 } });
    }
    const reply = dnsPacket.encode({ type: 'response', id: query.id, flags, questions: query.questions, answers });
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    setAddresses(name, addresses, ttl = 60) {
      const r = entry(name);
      r.A = addresses.filter((a) => !a.includes(':')).map((address) => ({ address, ttl }));
      r.AAAA = addresses.filter((a) => a.includes(':')).map((address) => ({ address, ttl }));
    },
    setSrv(name, targets, ttl = 60) {
      entry(name).SRV = targets.map((target) => ({ ...target, ttl }));
    },
    fault(kind) {
      fault = kind;
    },
    queries: (name) => counts.get(name.toLowerCase()) ?? 0,
    nextQueries(name, count = 1) {
      const key = name.toLowerCase();
      return new Promise((resolve) => waiters.add({ name: key, at: (counts.get(key) ?? 0) + count, resolve }));
    },
  };
}
