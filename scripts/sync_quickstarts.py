#!/usr/bin/env python3
"""Copies examples/quickstart.rs and examples/quickstart_negotiated.rs into the README's
quick-start blocks (the first ```rust block after each anchor), which
tests/atomic/quickstart.rs requires to be identical. Run after `cargo fmt`."""
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
readme = root / "README.md"
text = readme.read_text()
for anchor, example in [("## Quick start", "quickstart.rs"),
                        ("How it works: frame = floor", "quickstart_negotiated.rs")]:
    code = (root / "examples" / example).read_text()
    at = text.index(anchor)
    start = text.index("```rust\n", at) + len("```rust\n")
    end = text.index("```\n", start)
    text = text[:start] + code + text[end:]
readme.write_text(text)
