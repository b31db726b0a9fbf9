// Values the Node-side global setup hands to tests (`inject(...)`).
declare module "vitest" {
  export interface ProvidedContext {
    /** Base URL of the programmable receiver (test/support/receiver.ts). */
    receiverUrl: string;
    /** The same receiver on another port: another endpoint (origin). */
    secondReceiverUrl: string;
  }
}

export {};
