//! whistle: a case tracker for two processes that take burden off township officials.
//!
//! - 吹哨报到: a township "blows the whistle" on a problem it cannot solve alone; each summoned
//!   department must report in within 24 hours and then handle its part.
//! - 基层意见直通车: grassroots officials report where burden-reduction policy is not followed;
//!   the burden-reduction office replies within 3 working days and resolves within 7.
//!
//! A tour of the modules, in the order data flows:
//!
//! - [`domain`]: pure decide/evolve over events, the SLA policy, the working-day calendar and
//!   the event schemas. No clock, no I/O: `now` is an argument.
//! - [`cli`]: the command-line interface's parsing and its offline commands.
//!
//! Every state change is an event; views and alerts are derived from the log of events.

// The allocator the binary uses; linked into the library too, whose fold asks it to give
// memory back (projector::fold::release_freed_memory).
extern crate mimalloc;

pub mod alerts;
pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod demo;
pub mod domain;
pub mod execute;
pub mod files;
pub mod log;
pub mod projector;
pub mod reports;
pub mod serve;
pub mod service;
pub mod sim;
pub mod watchdog;
pub mod web;
