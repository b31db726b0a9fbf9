/**
 * One log line for a fault the delivery pipeline got past (an object or a binding that
 * could not answer, a write that failed): what stage, how many deliveries it touched,
 * and the error's name and message, never its stack. Ingest and the consumer log the
 * same shape, so one search finds both.
 */
export function logFault(stage: string, count: number, error: unknown, event = "deliveries.fault"): void {
  console.error(
    JSON.stringify({
      event,
      stage,
      count,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    }),
  );
}
