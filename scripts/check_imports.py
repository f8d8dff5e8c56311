#!/usr/bin/env python3
"""Refuse import circles between the files of the library (monotone/src).

Builds a graph of the files of monotone/src: an edge from file A to file B
when code in A (a `use` line, or an inline path such as
`crate::lease::keeper::LeaseKeeper`, `super::schema::ID` or
`schema::open` for a child module; never a comment, a doc comment or a
string) names an item whose path resolves to module file B. A path resolves
to the longest prefix of it that is a module with a file of its own:
`crate::lease::keeper::LeaseKeeper` -> lease/keeper.rs,
`crate::lease::Lease` -> lease/mod.rs, `crate::FencingToken` -> lib.rs.
A `mod x;` declaration is not an edge, nor is a file naming itself.

Prints every circle as a chain of files and exits 1; otherwise prints the
number of files and edges and exits 0.

So that a circle cannot hide behind a re-export, code inside the crate
imports an item from the file that defines it, never through the
re-exports of lib.rs or of a mod.rs, which are for the outside.

Usage: scripts/check_imports.py [--edges] [SRC_DIR]   (default: monotone/src)
  --edges   also print every file's edges, to see why a circle closes
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Names a path may start with that are never modules of this crate.
NOT_MODULES = {"Self", "std", "core", "alloc"}


def strip(source):
    """The source with comments removed and the contents of string and
    character literals blanked, keeping line breaks."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if source[i] == "\n":
                        out.append("\n")
                    i += 1
        elif re.match(r'b?r(#*)"', source[i:i + 300]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", source[i - 1])):
            m = re.match(r'b?r(#*)"', source[i:])
            end = '"' + m.group(1)
            j = source.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * source.count("\n", i, j))
            i = j
        elif c == '"' or (c == "b" and source.startswith('b"', i) and (i == 0 or not re.match(r"[A-Za-z0-9_]", source[i - 1]))):
            i = i + 1 if c == '"' else i + 2
            lines = 0
            while i < n and source[i] != '"':
                if source[i] == "\\":
                    i += 1
                if i < n and source[i] == "\n":
                    lines += 1
                i += 1
            out.append('""' + "\n" * lines)
            i += 1
        elif c == "'":
            # A character literal ('a', '\n', '\u{1F600}'), or a lifetime.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", source[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_use_tree(tree):
    """Expand a use tree (`crate::a::{b, c::{self, D as E}}`) into paths,
    each a list of segments; `self` in a group names the group's prefix."""
    tree = re.sub(r"\s+as\s+", "@", tree)
    tree = re.sub(r"\s+", "", tree)
    paths = []

    def walk(prefix, text):
        # Split at top-level commas.
        depth, start, parts = 0, 0, []
        for k, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:k])
                start = k + 1
        parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0:
                head = part[:brace].rstrip(":")
                segs = [s for s in head.split("::") if s] if head else []
                walk(prefix + segs, part[brace + 1:part.rindex("}")])
            else:
                part, _, alias = part.partition("@")
                alias = alias or None
                segs = [s for s in part.split("::") if s]
                if segs == ["self"]:
                    segs = []
                paths.append((prefix + segs, alias))

    walk([], tree)
    return paths


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module path (tuple) -> relative file name
        for root, _, names in os.walk(src):
            for name in names:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), src).replace(os.sep, "/")
                parts = rel[:-3].split("/")
                if parts == ["lib"] or parts == ["main"]:
                    module = ()
                elif parts[-1] == "mod":
                    module = tuple(parts[:-1])
                else:
                    module = tuple(parts)
                self.files[module] = rel
        self.edges = {f: set() for f in self.files.values()}

    def file_of(self, path):
        """The file of the longest prefix of an absolute path that is a
        module with a file."""
        for k in range(len(path), -1, -1):
            if tuple(path[:k]) in self.files:
                return self.files[tuple(path[:k])]
        return None

    def is_module(self, path):
        return tuple(path) in self.files

    def scan(self, rel):
        parts = rel[:-3].split("/")
        if parts in (["lib"], ["main"]):
            base = []
        elif parts[-1] == "mod":
            base = parts[:-1]
        else:
            base = parts
        with open(os.path.join(self.src, rel), encoding="utf-8") as f:
            code = strip(f.read())
        # Inline modules (`mod tests { .. }`) change what `self` and
        # `super` mean; track them by brace depth.
        inline = []  # (name, depth at which its body opened)
        depth = 0
        aliases = {}  # name -> absolute module path, from `use` of modules
        pending = []  # (module path, [segments]) of inline paths

        def absolute(module, segs):
            """Make `segs` (as written in `module`) absolute, or None if
            it names something outside the crate."""
            if not segs:
                return None
            head = segs[0]
            if head == "crate":
                return segs[1:]
            if head in ("self", "super"):
                cur = list(module)
                rest = segs
                while rest and rest[0] in ("self", "super"):
                    if rest[0] == "super":
                        if not cur:
                            return None
                        cur = cur[:-1]
                    rest = rest[1:]
                return cur + rest
            if head in NOT_MODULES:
                return None
            # A child module of the current module, or a module imported
            # by name.
            if self.is_module(list(module) + [head]) or module_has_inline(module, head):
                return list(module) + segs
            if head in aliases:
                return aliases[head] + segs[1:]
            return None

        inline_names = set()

        def module_has_inline(module, head):
            return tuple(list(module) + [head]) in inline_names

        token = re.compile(
            r"\bmod\s+(" + IDENT + r")\s*([;{])"
            r"|\buse\s+([^;]*);"
            r"|(\{)|(\})"
            r"|((?:::)?(?:\$?" + IDENT + r"\s*::\s*)+(?:" + IDENT + r"|\*|\{))"
        )
        for m in token.finditer(code):
            module = base + [name for name, _ in inline]
            if m.group(1):
                if m.group(2) == "{":
                    depth += 1
                    inline.append((m.group(1), depth))
                    inline_names.add(tuple(module + [m.group(1)]))
            elif m.group(3) is not None:
                for segs, alias in split_use_tree(m.group(3)):
                    segs = [s for s in segs if s]
                    path = absolute(module, segs)
                    if path is None:
                        continue
                    if path and path[-1] == "*":
                        path = path[:-1]
                    target = self.file_of(path)
                    if target:
                        self.edges[rel].add(target)
                    if self.is_module(path) and segs:
                        name = alias or (segs[-1] if segs[-1] not in ("self", "super", "crate") else None)
                        if name:
                            aliases[name] = path
            elif m.group(4):
                depth += 1
            elif m.group(5):
                if inline and inline[-1][1] == depth:
                    inline.pop()
                depth -= 1
            elif m.group(6):
                text = m.group(6)
                if text.startswith("$"):
                    continue
                segs = [s for s in re.split(r"\s*::\s*", text.strip(":")) if s]
                if segs and segs[-1] in ("*", "{"):
                    segs = segs[:-1]
                pending.append((tuple(module), segs))
                if text.endswith("{"):
                    depth += 1
        for module, segs in pending:
            path = absolute(module, segs)
            if path is None:
                continue
            target = self.file_of(path)
            if target:
                self.edges[rel].add(target)
        self.edges[rel].discard(rel)


def cycles(edges):
    """One chain per strongly connected component of more than one file."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    chains = []
    for comp in out:
        members = set(comp)
        start = comp[0]
        # Shortest way back to `start` inside the component.
        prev, frontier, found = {start: None}, [start], None
        while frontier and not found:
            nxt = []
            for v in frontier:
                for w in sorted(edges[v] & members):
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found:
                    break
            frontier = nxt
        chain, v = [start], found
        while v is not None and v != start:
            chain.append(v)
            v = prev[v]
        chain.reverse()
        chain = [start] + chain[:-1] + [start] if len(chain) > 1 else [start, start]
        chains.append((comp, chain))
    return chains


def main():
    args = sys.argv[1:]
    show = "--edges" in args
    args = [a for a in args if a != "--edges"]
    src = args[0] if args else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "monotone", "src")
    crate = Crate(src)
    for rel in sorted(crate.edges):
        crate.scan(rel)
    if show:
        for rel in sorted(crate.edges):
            print(rel + " -> " + ", ".join(sorted(crate.edges[rel])))
    found = cycles(crate.edges)
    edges = sum(len(v) for v in crate.edges.values())
    if found:
        for comp, chain in found:
            print("import circle: " + " -> ".join(chain))
            if len(comp) > len(chain) - 1:
                print("  (the files " + ", ".join(comp) + " all reach one another)")
        print(f"{len(found)} import circle(s) among {len(crate.files)} files", file=sys.stderr)
        return 1
    print(f"no import circles: {len(crate.files)} files, {edges} edges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
