// What an agent check's reply says, read as HAProxy reads it (configuration manual, agent-check):
// words separated by spaces, commas or tabs, in any order, each setting one thing.

/** The parts of a reply; a part the reply does not mention is left as it was. */
export interface AgentReply {
  /** A weight share in percent (`75%`): the configured weight is scaled by it. */
  percent?: number;
  /** `ready` ends a drain or maintenance, `drain` stops new sessions, `maint` takes the backend out. */
  mode?: 'ready' | 'drain' | 'maint';
  /** `up` or `down` (also `fail`, `stopped`): the backend's operating state as the agent sees it. */
  up?: boolean;
  /** Text after `#`, kept for the log. */
  note?: string;
}

/** The highest share an agent may give, as in HAProxy (its weights stop at 256). */
export const MAX_AGENT_PERCENT = 256;

/**
 * Reads the first line of an agent's reply. Returns an error message for a reply with no word
 * fairway knows, so that it is logged and changes nothing; unknown words beside known ones are
 * skipped, as HAProxy does.
 */
export function parseAgentReply(text: string): AgentReply | string {
  const line = text.split(/\r?\n/, 1)[0];
  const hash = line.indexOf('#');
  const words = (hash >= 0 ? line.slice(0, hash) : line).split(/[\s,]+/).filter(Boolean);
  const reply: AgentReply = {};
  if (hash >= 0) reply.note = line.slice(hash + 1).trim();
  let known = 0;
  for (const word of words.map((w) => w.toLowerCase())) {
    const percent = /^(\d{1,3})%$/.exec(word);
    if (percent) {
      reply.percent = Math.min(MAX_AGENT_PERCENT, Number(percent[1]));
      known++;
    } else if (word === 'ready' || word === 'drain' || word === 'maint') {
      reply.mode = word;
      known++;
    } else if (word === 'up') {
      reply.up = true;
      known++;
    } else if (word === 'down' || word === 'fail' || word === 'stopped') {
      reply.up = false;
      known++;
    }
  }
  if (known === 0) return line.trim() === '' ? 'the agent sent an empty reply' : `the agent's reply ${JSON.stringify(line.slice(0, 80))} has no word fairway knows (a percentage, ready, drain, maint, up, down)`;
  return reply;
}
