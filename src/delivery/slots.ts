/**
 * A subscriber's concurrency within one process, shared by its queue worker and fan-out's
 * first attempts so that together they never have more requests in flight than configured.
 * A freed slot goes to a waiting worker first: while the queue has work, new deliveries join it.
 */
export class Slots {
  private used = 0
  private readonly waiting: (() => void)[] = []

  constructor(private readonly size: number) {}

  /** Takes a slot if one is free at once and no one waits for one. */
  tryTake(): boolean {
    if (this.used >= this.size || this.waiting.length > 0) return false
    this.used += 1
    return true
  }

  async take(): Promise<void> {
    if (this.tryTake()) return
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  /** Waits at most `ms` for a slot; false if none came. */
  async takeWithin(ms: number): Promise<boolean> {
    if (this.tryTake()) return true
    return await new Promise<boolean>((resolve) => {
      const waiter = () => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1)
        resolve(false)
      }, ms)
      this.waiting.push(waiter)
    })
  }

  release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.used -= 1
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.take()
    try {
      return await task()
    } finally {
      this.release()
    }
  }
}
