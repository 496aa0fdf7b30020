//! How many cases a property test runs, included by both test binaries (`#[path]`).

/// `PROPTEST_CASES` if set (the long runs of `scripts/long_properties.sh`), else `default`
/// (a config that names its own `cases` is not changed by proptest's variable).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
