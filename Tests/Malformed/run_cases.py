#!/usr/bin/env python3
"""Runs command lines and reports how each ended, for MalformedCorpusTests.

    python3 run_cases.py CASES.json RESULTS.json

CASES.json is a list of argv lists. RESULTS.json gets {"results": [{"returncode": N,
"stderr": "..."}], "children_max_rss_kb": K}: returncode < 0 is a signal, K is
getrusage(RUSAGE_CHILDREN).ru_maxrss, the peak RSS of the largest child. The children are
started from this small process rather than from the test binary because a child spawned with
CLONE_VM (posix_spawn) inherits its parent's peak RSS into its own ru_maxrss at exec.
"""
import json, resource, subprocess, sys

cases = json.load(open(sys.argv[1]))
results = []
for argv in cases:
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    results.append({"returncode": p.returncode, "stderr": p.stderr.decode("utf-8", "replace")})
json.dump({"results": results, "children_max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss},
          open(sys.argv[2], "w"))
