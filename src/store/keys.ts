/** Every key the relay owns, under one prefix; BullMQ queues share the prefix (see delivery/queues.ts). */
export function storeKeys(prefix: string) {
  return {
    event: (eventId: string) => `${prefix}:event:${eventId}`,
    /** The body, kept once per event (not per delivery) until every routed subscriber has it. */
    body: (eventId: string) => `${prefix}:body:${eventId}`,
    intake: `${prefix}:intake`
  }
}

export type StoreKeys = ReturnType<typeof storeKeys>
