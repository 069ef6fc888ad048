use std::process::ExitCode;

use clap::Parser;
use whistle::cli::{calendar_due_line, CalendarCommand, Cli, Command};
use whistle::domain::Calendar;

/// Exit code for bad input, as clap uses for bad arguments.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Calendar { command: CalendarCommand::Due { from, working_days } } => {
            match calendar_due_line(&Calendar::official(), from, working_days) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::from(EXIT_BAD_INPUT)
                }
            }
        }
        Command::Serve => {
            eprintln!(
                "whistle serve: the HTTP service is not part of this build yet; `whistle calendar due` works today."
            );
            ExitCode::FAILURE
        }
    }
}
