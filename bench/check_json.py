#!/usr/bin/env python3
"""Checks the shape of an evstore-bench --json file (the bench_quick_json test).

Every object of "results" carries scenario, metric, value, unit, reference
and ratio: value a number, unit a string, reference a string or null, ratio
a number or null, and a ratio always names its reference. NaN and Infinity
(not JSON) are refused. Skips and errors are in "skipped", never in
"results". Speed is never checked.
"""
import json
import sys


def refuse_constant(name):
    raise ValueError("non-JSON number " + name)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f, parse_constant=refuse_constant)
    errors = []
    for key in ("machine", "results", "skipped", "targets"):
        if key not in doc:
            errors.append("missing top-level key " + key)
    results = doc.get("results", [])
    if not results:
        errors.append("no results")
    for i, r in enumerate(results):
        where = "results[%d] %s %s" % (i, r.get("scenario"), r.get("metric"))
        for key in ("scenario", "metric", "value", "unit", "reference", "ratio"):
            if key not in r:
                errors.append("%s: no %s" % (where, key))
        if not isinstance(r.get("scenario"), str) or not r.get("scenario"):
            errors.append(where + ": scenario not a non-empty string")
        if not isinstance(r.get("metric"), str) or not r.get("metric"):
            errors.append(where + ": metric not a non-empty string")
        if not is_num(r.get("value")):
            errors.append(where + ": value not a number")
        if not isinstance(r.get("unit"), str):
            errors.append(where + ": unit not a string")
        ref, ratio = r.get("reference"), r.get("ratio")
        if ref is not None and not (isinstance(ref, str) and ref):
            errors.append(where + ": reference neither a string nor null")
        if ratio is not None and not is_num(ratio):
            errors.append(where + ": ratio neither a number nor null")
        if ratio is not None and ref is None:
            errors.append(where + ": a ratio without its reference")
    for i, s in enumerate(doc.get("skipped", [])):
        if s.get("metric") not in ("skipped", "error") and is_num(s.get("value")):
            errors.append("skipped[%d]: a figure among the skips" % i)
    for e in errors[:50]:
        print(path + ": " + e, file=sys.stderr)
    print("%s: %d results, %d skipped, %d targets, %d problem(s)"
          % (path, len(results), len(doc.get("skipped", [])),
             len(doc.get("targets", [])), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: check_json.py FILE", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
