// A channel that holds received, unsettled messages: it tells their deliveries when it closes
// (the broker then puts every message it held back in its queue) and closes itself once it is
// retired and holds nothing.

import type { Channel } from "amqplib";

export interface ChannelHolder {
  /** The channel closed while this holder's message was unsettled. */
  channelLost(reason: string): void;
}

export class HoldingChannel {
  private readonly holders = new Set<ChannelHolder>();
  private retired = false;
  private lastError?: string;
  private closedBecause?: string;

  constructor(
    readonly channel: Channel,
    mask: (err: unknown) => string,
  ) {
    channel.on("error", (err: unknown) => (this.lastError = mask(err)));
    channel.on("close", () => {
      this.closedBecause = this.lastError ?? "channel closed";
      const holders = [...this.holders];
      this.holders.clear();
      for (const h of holders) h.channelLost(this.closedBecause);
    });
  }

  get isOpen(): boolean {
    return this.closedBecause === undefined;
  }

  get holding(): number {
    return this.holders.size;
  }

  hold(holder: ChannelHolder): void {
    this.holders.add(holder);
  }

  /** No new messages will be taken on this channel: close it once nothing is held. */
  retire(): void {
    this.retired = true;
    if (this.holders.size === 0) void this.close();
  }

  /**
   * The holder has sent its ack or nack. Resolves after a round trip on this channel, which
   * proves that the broker processed what was sent before it (the channel's close when it is
   * retired and now empty); rejects when the channel died first, so the outcome is unknown.
   */
  async release(holder: ChannelHolder): Promise<void> {
    this.holders.delete(holder);
    if (this.retired && this.holders.size === 0) await this.channel.close();
    else await this.channel.prefetch(0);
  }

  async close(): Promise<void> {
    if (!this.isOpen) return;
    await this.channel.close().catch(() => undefined);
  }
}
