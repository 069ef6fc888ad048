//! The `whistle` binary's offline commands, run as a user would.

use std::process::{Command, Output};

fn whistle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whistle")).args(args).output().expect("the whistle binary runs")
}

fn due(from: &str, n: &str) -> Output {
    whistle(&["calendar", "due", "--from", from, "--working-days", n])
}

#[test]
fn calendar_due_prints_one_beijing_line() {
    let out = due("2026-09-18T10:00:00+08:00", "3");
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "2026-09-23T00:00:00+08:00\n");
    let out = due("2026-09-18T02:00:00Z", "1");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "2026-09-21T00:00:00+08:00\n", "Sun 09-20 is a make-up day");
}

#[test]
fn calendar_due_marks_provisional_deadlines_on_the_same_line() {
    let out = due("2026-12-30T10:00:00+08:00", "3");
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "2027-01-05T00:00:00+08:00 provisional\n");
}

#[test]
fn bad_input_exits_2_with_a_message_and_prints_nothing_on_stdout() {
    for (from, n, words) in [
        ("yesterday", "3", "is not an RFC 3339 instant"),
        ("2026-09-18", "3", "is not an RFC 3339 instant"),
        ("2026-09-18T10:00:00+08:00", "0", "0 is not in 1..=3660"),
        ("2026-09-18T10:00:00+08:00", "-1", "--working-days"),
        ("2026-09-18T10:00:00+08:00", "three", "invalid value"),
    ] {
        let out = due(from, n);
        assert_eq!(out.status.code(), Some(2), "{from} {n}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(words), "{err:?} should say {words:?}");
    }
    let out = whistle(&["calendar", "due", "--from", "2026-09-18T10:00:00+08:00"]);
    assert_eq!(out.status.code(), Some(2), "a missing argument is bad input");
}
