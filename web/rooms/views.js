// Each room's own view of its activity, by `activityType`; a room without one shows the task
// cards and progress every activity has.

import { renderBrainstorm } from "./room-brainstorm.js";
import { renderDebate } from "./room-debate.js";
import { renderSharkTank } from "./room-shark-tank.js";

const VIEWS = {
  brainstorm: renderBrainstorm,
  debate: renderDebate,
  shark_tank: renderSharkTank,
};

/** The room's view of `activity`, or null. */
export function roomView(activityType, activity) {
  const view = VIEWS[activityType];
  return view ? view(activity) : null;
}
