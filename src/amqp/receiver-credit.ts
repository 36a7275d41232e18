// Link credit for a link the hub receives on. rhea's own credit window refills as messages arrive,
// whether or not the hub has settled them, and rhea takes a transfer that had no credit with only a
// console line: neither bounds what a peer makes the hub hold. Here credit refills as the hub
// settles, so a link never has more than `window` messages unsettled or credited, none is issued
// while the hub holds the link, and a transfer beyond the credit issued is a violation.
import type rhea from 'rhea'

export class ReceiverCredit {
  private issued = 0
  private received = 0
  private settledCount = 0
  private isHeld = false

  constructor(private readonly receiver: rhea.Receiver, readonly window: number, private readonly onViolation: () => void) {}

  /** Messages received and not settled yet. */
  get unsettled(): number { return this.received - this.settledCount }

  /** The link is attached: the first credit. */
  open(): void { this.refill() }

  /** A transfer arrived; false (and the violation reported) when the peer had no credit for it. */
  arrived(): boolean {
    this.received++
    if (this.received <= this.issued) return true
    this.onViolation()
    return false
  }

  /** The hub settled one of this link's messages. */
  settled(): void {
    this.settledCount++
    this.refill()
  }

  /** While held no credit is issued; what the peer holds already may still arrive. */
  hold(on: boolean): void {
    this.isHeld = on
    if (!on) this.refill()
  }

  private refill(): void {
    if (this.isHeld || !this.receiver.is_open() && !this.receiver.is_remote_open()) return
    const outstanding = this.issued - this.received
    const room = this.window - this.unsettled - outstanding
    // in steps of a quarter window, so a busy link does not cost a flow frame per message
    if (room <= 0 || (room < this.window / 4 && outstanding > 0)) return
    this.issued += room
    this.receiver.add_credit(room)
  }
}
