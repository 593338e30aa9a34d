// The @ag-ui/client generations in use (npm aliases in package.json), each with its own
// @ag-ui/core event schemas and the event profile roomhost gives it: 1.x declares protocol 1.0
// and gets the full stream; the older ones send no version and get the legacy one.

import { HttpAgent as HttpAgent0057 } from "agui-client-0057";
import { HttpAgent as HttpAgent0059 } from "agui-client-0059";
import { EventSchemas as EventSchemas0057 } from "agui-core-0057";
import { EventSchemas as EventSchemas0059 } from "agui-core-0059";

import { CURRENT } from "./agui.js";

export const CLIENTS = [
  { name: "@ag-ui/client 0.0.57", HttpAgent: HttpAgent0057, EventSchemas: EventSchemas0057, profile: "legacy" },
  { name: "@ag-ui/client 0.0.59", HttpAgent: HttpAgent0059, EventSchemas: EventSchemas0059, profile: "legacy" },
  CURRENT,
];
