// An optional CPU profile of a worker thread, for finding where the data plane spends its time.

/**
 * FAIRWAY_CPU_PROFILE=DIR: profiles this worker thread (the data plane) from start to graceful
 * shutdown and writes DIR/worker-N.cpuprofile, for Chrome DevTools or speedscope. Returns the
 * function that stops and writes the profile.
 */
export async function startProfile(dir: string | undefined, worker: number): Promise<(() => Promise<void>) | undefined> {
  if (!dir) return undefined;
  const { Session } = await import('node:inspector/promises');
  const { writeFile } = await import('node:fs/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    await writeFile(`${dir}/worker-${worker}.cpuprofile`, JSON.stringify(profile));
    session.disconnect();
  };
}
