// A comma-separated setting (--amqp-queues, --file-storage-roots, --http-allowed-hosts,
// --storage-identity-allow): its entries, trimmed, empty ones dropped.

export function commaList(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
}
