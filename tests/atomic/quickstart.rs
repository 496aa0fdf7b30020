//! The README's quick starts are the `quickstart` examples, character for character: the
//! README is the crate's doc (its blocks run as doctests) and the examples are what
//! `cargo run --example quickstart` runs, so neither can drift from the other.

const README: &str = include_str!("../../README.md");

/// The first ```rust block after `anchor` in the README.
fn rust_block_after(anchor: &str) -> &'static str {
    let from = README
        .find(anchor)
        .unwrap_or_else(|| panic!("README has no {anchor:?}"));
    let start = README[from..]
        .find("```rust\n")
        .expect("a rust block after the anchor")
        + from
        + 8;
    let len = README[start..].find("```\n").expect("the block closes");
    &README[start..start + len]
}

/// The README block after `anchor` is `example` (the text of `examples/{name}`), a complete
/// program with no rustdoc-hidden lines.
fn assert_block_is_example(anchor: &str, example: &str, name: &str) {
    assert_eq!(
        rust_block_after(anchor),
        example,
        "the README block after {anchor:?} and examples/{name} differ: copy one onto the other"
    );
    assert!(
        !example.lines().any(|l| l.trim_start().starts_with("# ")),
        "no rustdoc-hidden lines"
    );
    assert!(example.contains("fn main()"), "a complete program");
}

#[test]
fn atomic_quick_start_is_the_quickstart_example() {
    let example = include_str!("../../examples/quickstart.rs");
    assert_block_is_example("## Quick start", example, "quickstart.rs");
}

#[test]
fn negotiated_quick_start_is_the_quickstart_negotiated_example() {
    let example = include_str!("../../examples/quickstart_negotiated.rs");
    assert_block_is_example(
        "How it works: frame = floor",
        example,
        "quickstart_negotiated.rs",
    );
}
