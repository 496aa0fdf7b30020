//! What every fuzz target is, and running one case of it under `catch_unwind` with the
//! panic's message, location and the case's input kept for the report.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use crate::inputs::Draw;

/// One fuzz target: inputs drawn from a seeded [`Draw`], then run. Everything a case does
/// is decided by its input (and the seeds in it), so a case replays from its seed.
pub trait Target {
    /// One case's input.
    type Input: Debug;
    /// The target's name in the report and on the command line.
    const NAME: &'static str;
    /// Draws one case.
    fn generate(draw: &mut Draw) -> Self::Input;
    /// Runs one case; panics on a bug (a library panic or a broken invariant).
    fn execute(input: &Self::Input);
    /// The input, for the report of a failing case.
    fn describe(input: &Self::Input) -> String {
        format!("{input:#?}")
    }
}

/// A case that panicked.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The panic message and where it was raised.
    pub panic: String,
    /// The case's input ([`Target::describe`]).
    pub input: String,
}

/// A [`Target`] behind a pointer, so the runner can hold a list of them.
pub trait DynTarget {
    /// [`Target::NAME`].
    fn name(&self) -> &'static str;
    /// Draws and runs the case with this seed, catching a panic.
    fn run(&self, case_seed: u64) -> Result<(), Failure>;
    /// Draws and runs the case without catching anything (a panic ends the process with
    /// the usual message and backtrace); prints the input first.
    fn replay(&self, case_seed: u64);
}

struct Of<T>(PhantomData<T>);

/// A target for the runner's list.
pub fn target<T: Target + 'static>() -> Box<dyn DynTarget> {
    Box::new(Of::<T>(PhantomData))
}

impl<T: Target> DynTarget for Of<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn run(&self, case_seed: u64) -> Result<(), Failure> {
        let input =
            catch_unwind(|| T::generate(&mut Draw::new(case_seed))).map_err(|_| Failure {
                panic: take_panic(),
                input: format!("(generating the input of case {case_seed} panicked)"),
            })?;
        catch_unwind(AssertUnwindSafe(|| T::execute(&input))).map_err(|_| Failure {
            panic: take_panic(),
            input: T::describe(&input),
        })
    }

    fn replay(&self, case_seed: u64) {
        let input = T::generate(&mut Draw::new(case_seed));
        eprintln!(
            "{} case {case_seed} input:\n{}",
            T::NAME,
            T::describe(&input)
        );
        T::execute(&input);
        eprintln!("{} case {case_seed}: no panic", T::NAME);
    }
}

/// The last panic the hook saw.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the panic hook with one that keeps the message, the location and a
/// backtrace for the report instead of printing them (a fuzz run catches every panic).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let text = format!("{info}\nbacktrace:\n{backtrace}");
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }));
}

fn take_panic() -> String {
    LAST_PANIC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| "(no panic message)".to_owned())
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How deep the cases went (matches committed, facts stored...), over the run.
static DEPTH: Mutex<std::collections::BTreeMap<&'static str, u64>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Adds `n` to a depth counter (reported in the summary).
pub fn count(name: &'static str, n: u64) {
    *DEPTH
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name)
        .or_default() += n;
}

/// The depth counters.
pub fn depth() -> std::collections::BTreeMap<&'static str, u64> {
    DEPTH.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
