// The balancing algorithms by their config name.

import type { Algorithm } from '../../config/types.js';
import { ConsistentHash } from './consistentHash.js';
import { LeastConnections } from './leastConnections.js';
import { LeastTime } from './leastTime.js';
import type { PickerFactory } from './picker.js';
import { PowerOfTwoChoices } from './powerOfTwo.js';
import { WeightedRandom } from './random.js';
import { RoundRobin } from './roundRobin.js';
import { WeightedRoundRobin } from './weightedRoundRobin.js';

export const PICKERS: Record<Algorithm, PickerFactory> = {
  'round-robin': (context) => new RoundRobin(context),
  'weighted-round-robin': (context) => new WeightedRoundRobin(context),
  'least-conn': (context) => new LeastConnections(context),
  random: (context) => new WeightedRandom(context),
  p2c: (context) => new PowerOfTwoChoices(context),
  'least-time': (context) => new LeastTime(context),
  hash: (context) => new ConsistentHash(context),
};
