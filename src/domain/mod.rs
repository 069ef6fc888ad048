//! The domain: pure code with no clock reads and no I/O.
//!
//! - [`event`]: the stored facts, versioned, with stable `type` strings.
//! - [`command`]: what someone asks for.
//! - [`state`]: a case's state and `evolve`, which folds events into it.
//! - [`decide`]: `decide(state, command, now)`, the events or a typed [`Rejection`].
//! - [`calendar`]: official working-day schedules and the "N working days" rule.
//! - [`policy`]: the SLA policy (targets, warnings, escalation), from TOML.
//! - [`clocks`]: the armed clocks of a case, with deadlines, from state + policy + calendar.
//! - [`schema`]: JSON Schemas for every event type, generated from the types.
//! - [`similar`]: character-bigram similarity, for spotting the same problem reported twice.
//! - [`files`]: evidence files: the kinds taken, told from their bytes, and their limits.

pub mod calendar;
pub mod clocks;
pub mod command;
pub mod decide;
pub mod event;
pub mod files;
pub mod policy;
pub mod schema;
pub mod similar;
pub mod state;

pub use calendar::{Calendar, Deadline, YearSchedule};
pub use clocks::{armed_clocks, ArmedClock};
pub use command::{Command, CommandBody};
pub use decide::{decide, Rejection};
pub use event::{Actor, ClockKind, ClockRef, Event, EventBody, Role};
pub use policy::SlaPolicy;
pub use state::{evolve, State};
