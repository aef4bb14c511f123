/** Every key the relay owns, under one prefix; BullMQ queues share the prefix (see delivery/queues.ts). */
export function storeKeys(prefix: string) {
  return {
    event: (eventId: string) => `${prefix}:event:${eventId}`,
    intake: `${prefix}:intake`
  }
}

export type StoreKeys = ReturnType<typeof storeKeys>
