//! The in-process test harness both modes build on.
