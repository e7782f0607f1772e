/**
 * Long-poll waiting rooms, one per device MAC. A device's poll parks here until the operator
 * gives it work (wake) or its wait runs out; a thousand parked polls cost one Set entry each.
 */
export function createWaiters() {
  const rooms = new Map<string, Set<() => void>>();

  function wait(mac: string, ms: number, signal?: AbortSignal): Promise<'woken' | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      let room = rooms.get(mac);
      if (!room) rooms.set(mac, (room = new Set()));
      const finish = (outcome: 'woken' | 'timeout' | 'aborted') => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        room!.delete(wake);
        if (room!.size === 0) rooms.delete(mac);
        resolve(outcome);
      };
      const wake = () => finish('woken');
      const onAbort = () => finish('aborted');
      const timer = setTimeout(() => finish('timeout'), ms);
      room.add(wake);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  return {
    wait,
    wake(mac: string) {
      for (const wake of [...(rooms.get(mac) ?? [])]) wake();
    },
    waiting: () => [...rooms.values()].reduce((n, room) => n + room.size, 0),
    /** The devices with a parked poll. */
    parked: () => [...rooms.keys()],
  };
}

export type Waiters = ReturnType<typeof createWaiters>;
