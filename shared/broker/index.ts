export { createBroker } from './create.ts';
export type { Broker } from './create.ts';
export type { BrokerMetrics, BrokerOptions, BrokerPorts, BrokerTargets } from './ports.ts';
export { reverifyDue } from './reverify.ts';
export type { ReverifyOutcome } from './reverify.ts';
export { ReverifyMessageSchema } from './reverify-message.ts';
export type { ReverifyMessage } from './reverify-message.ts';
