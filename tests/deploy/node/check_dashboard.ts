// deploy/grafana/strata.json against Grafana's own Dashboard type (@grafana/schema, pinned in
// package.json): `tsc --noEmit -p .` fails on a missing required field (schemaVersion, a
// panel's `type`, gridPos.h, ...), a wrong type (a string where a number belongs, an object
// where an array belongs) or a misplaced structure.
import type { Dashboard } from '@grafana/schema';
import dashboard from '../../../deploy/grafana/strata.json';

// A JSON import types every string as `string` and every number as `number`, so the schema's
// string enums (ThresholdsMode, FieldColorModeId) and literal unions (VariableType) are compared
// as the JSON types they are written in; everything else is checked as declared.
type AsJson<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean
      ? boolean
      : T extends null | undefined
        ? T
        : T extends Array<infer E>
          ? Array<AsJson<E>>
          : T extends object
            ? { [K in keyof T]: AsJson<T[K]> }
            : T;

export const checked: AsJson<Dashboard> = dashboard;
