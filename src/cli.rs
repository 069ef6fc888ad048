//! Command-line interface: argument parsing and the offline commands. `main.rs` is the glue.

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::domain::calendar::{Calendar, WORKING_DAYS_MAX};

#[derive(Parser, Debug)]
#[command(name = "whistle", version, about = "吹哨报到 and 基层意见直通车: cases, SLA clocks and supervisor alerts")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service: HTTP API, projector, watchdog and alert delivery.
    Serve,
    /// Working-day calendar (official schedules, Beijing time).
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum CalendarCommand {
    /// Print the deadline "within N working days" of an instant, in Beijing time.
    ///
    /// The date of --from is not counted; the deadline is 24:00 Beijing time of the Nth
    /// working day after it. The word `provisional` follows when a counted day lies in a year
    /// with no published schedule.
    Due {
        /// Start instant, RFC 3339 (e.g. 2026-09-18T10:00:00+08:00).
        #[arg(long, value_parser = parse_rfc3339)]
        from: DateTime<Utc>,
        /// Number of working days, at least 1.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKING_DAYS_MAX)))]
        working_days: u32,
    },
}

fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 instant like 2026-09-18T10:00:00+08:00 ({e})"))
}

/// The line `calendar due` prints: the deadline, then ` provisional` when it is.
pub fn calendar_due_line(calendar: &Calendar, from: DateTime<Utc>, working_days: u32) -> Result<String, String> {
    let deadline = calendar.working_days_after(from, working_days).map_err(|e| e.to_string())?;
    let mut line = deadline.to_beijing_rfc3339();
    if deadline.provisional {
        line.push_str(" provisional");
    }
    Ok(line)
}
