#!/usr/bin/env bash
# test/structure.sh - checks the shape of the C code in src/, from the objects
# a build left there (it builds nothing itself):
#
#   (a) the files call into each other without circles: file A depends on
#       file B when A's object has an undefined symbol (a function, or a
#       shared global such as a GUC variable) that B's object defines.  The
#       graph must be acyclic; callbacks handed over as function pointers
#       are not calls and do not count.
#   (b) no src/*.c is over 800 lines.
#
# It prints each file with its line count and the files it depends on,
# leaves first, then fails (exit 1) on a cycle or an oversized file.
#
# Usage: test/structure.sh [SRCDIR]    (default: src/ of this tree)
set -euo pipefail

src=${1:-$(cd "$(dirname "$0")/.." && pwd)/src}

python3 - "$src" <<'PYEOF'
import glob
import os
import subprocess
import sys

MAX_LINES = 800
src = sys.argv[1]
problems = []

cfiles = sorted(glob.glob(os.path.join(src, "*.c")))
if not cfiles:
    sys.exit("structure: no C files in %s" % src)

defined = {}        # symbol -> file
undefined = {}      # file -> set of symbols
lines = {}
for c in cfiles:
    name = os.path.basename(c)[:-2]
    with open(c, encoding="utf-8", errors="replace") as f:
        lines[name] = sum(1 for _ in f)
    obj = c[:-2] + ".o"
    if not os.path.exists(obj):
        problems.append("%s.c has no object %s.o: build first" % (name, name))
        continue
    if os.path.getmtime(obj) < os.path.getmtime(c):
        problems.append("%s.o is older than %s.c: build first" % (name, name))
    out = subprocess.run(["nm", obj], check=True, capture_output=True,
                         text=True).stdout
    undefined[name] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined[name].add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRCGS":
            if parts[2] in defined and defined[parts[2]] != name:
                problems.append("%s is defined in both %s.c and %s.c"
                                % (parts[2], defined[parts[2]], name))
            defined[parts[2]] = name

deps = {f: sorted({defined[s] for s in undefined[f]
                   if s in defined and defined[s] != f})
        for f in undefined}

# cycles: strongly connected components of more than one file (Tarjan)
index = {}
low = {}
stack = []
on_stack = set()
sccs = []
counter = [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in deps[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(comp)


sys.setrecursionlimit(10000)
for f in sorted(deps):
    if f not in index:
        visit(f)
for comp in sccs:
    if len(comp) > 1:
        cyc = sorted(comp)
        problems.append("cycle among %s" % ", ".join(c + ".c" for c in cyc))
        for a in cyc:
            for b in deps[a]:
                if b in comp:
                    calls = sorted(s for s in undefined[a] if defined.get(s) == b)
                    problems.append("  %s.c -> %s.c: %s" % (a, b, ", ".join(calls)))

# the graph, leaves first (Tarjan emits components in reverse topological order)
print("src/ file graph (file, lines: the files it depends on), leaves first:")
for comp in sccs:
    for f in sorted(comp):
        print("  %-16s %4d: %s" % (f + ".c", lines[f],
                                   " ".join(d + ".c" for d in deps[f]) or "-"))

for f in sorted(lines):
    if lines[f] > MAX_LINES:
        problems.append("%s.c has %d lines, over %d" % (f, lines[f], MAX_LINES))

if problems:
    sys.stdout.flush()
    print("structure: FAILED", file=sys.stderr)
    for p in problems:
        print("  " + p, file=sys.stderr)
    sys.exit(1)
print("structure: ok (%d files, no cycles, none over %d lines)"
      % (len(lines), MAX_LINES))
PYEOF
