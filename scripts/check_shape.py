"""Checks the shape of the code: no file under src/ over 700 lines, no function over 100 lines.

Functions are found by their `fn` line and measured to the line where their braces close
(a plain brace count that skips strings, chars and comments well enough for this crate).
    python3 scripts/check_shape.py [ROOT ...]   (default: src examples)
"""
import re
import sys
from pathlib import Path

MAX_FILE = 700
MAX_FN = 100
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip(line):
    """The line without string/char literals and comments, for brace counting."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def functions(lines):
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            s = strip(lines[j])
            if not opened and ";" in s and "{" not in s:
                break  # a declaration without a body
            depth += s.count("{") - s.count("}")
            opened = opened or "{" in s
            if opened and depth <= 0:
                yield m.group(6), i + 1, j - i + 1
                break
            j += 1
        i += 1


def main(roots):
    problems = []
    longest = (0, "")
    for root in roots:
        for path in sorted(Path(root).rglob("*.rs")):
            lines = path.read_text().splitlines()
            if str(path).startswith("src") and len(lines) > MAX_FILE:
                problems.append(f"{path}: {len(lines)} lines (most {MAX_FILE})")
            for name, start, length in functions(lines):
                longest = max(longest, (length, f"{path}:{start} {name}"))
                if length > MAX_FN:
                    problems.append(f"{path}:{start}: fn {name} is {length} lines (most {MAX_FN})")
    print(f"shape: longest function {longest[1]} ({longest[0]} lines)")
    for p in problems:
        print("shape: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["src", "examples"]))
