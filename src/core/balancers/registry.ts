// The balancing algorithms by their config name.

import type { Algorithm } from '../../config/schema.js';
import { LeastConnections } from './leastConnections.js';
import type { PickerFactory } from './picker.js';
import { RoundRobin } from './roundRobin.js';

export const PICKERS: Record<Algorithm, PickerFactory> = {
  'round-robin': (context) => new RoundRobin(context),
  'least-conn': (context) => new LeastConnections(context),
};
