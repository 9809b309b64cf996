import { DETAIL_TYPES } from './schemas.ts';

/**
 * How input events reach the lifecycle, by detail-type. The CDK rules and the local bus are both
 * built from this table, so local routing is the deployed routing.
 */
export const ROUTES = [
  { name: 'task-started', detailType: DETAIL_TYPES.taskStarted },
  { name: 'task-ended', detailType: DETAIL_TYPES.taskEnded },
] as const;

export type RouteName = (typeof ROUTES)[number]['name'];

/** What workflow engines put: the detail-types the routes take. */
export const INPUT_DETAIL_TYPES: string[] = ROUTES.map((r) => r.detailType);
/** What only the broker puts (source `tasklease`): every other detail-type of the contract. */
export const OUTPUT_DETAIL_TYPES: string[] = Object.values(DETAIL_TYPES).filter((t) => !INPUT_DETAIL_TYPES.includes(t));

/** An EventBridge event as delivered to targets (the parts tasklease reads). */
export interface BusEvent {
  id: string;
  'detail-type': string;
  source: string;
  time: string;
  detail: unknown;
}
