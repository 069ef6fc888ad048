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

#[test]
fn calendar_publish_records_the_year_and_refuses_bad_files_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = dir.path().join("2027.toml");
    std::fs::write(
        &good,
        "year = 2027\nnotice = \"国务院办公厅关于2027年部分节假日安排的通知\"\n\
         holidays = [{ name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-03\" }]\nworkdays = []\n",
    )
    .unwrap();
    let out = whistle(&["calendar", "publish", good.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("published the 2027 calendar at log position 1"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "year = 2027\nnotice = \"n\"\nholidays = []\nworkdays = [\"2027-01-06\"]\n").unwrap();
    let out = whistle(&["calendar", "publish", bad.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("2027-01-06 is not a weekend day"));

    let out = whistle(&["project", "--data", data.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("projected 1 records"), "the bad file wrote nothing");
}

/// `whistle views compact` (or `digest`) on a folder without views used to create a data
/// folder and empty views there, and answer 0.
#[test]
fn views_commands_on_a_folder_without_views_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("no-such-data");
    for command in ["compact", "digest"] {
        let out = whistle(&["views", command, "--data", data.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("holds no views"), "{command}");
        assert!(out.stdout.is_empty(), "{command}");
        assert!(!data.exists(), "{command} created {}", data.display());
    }
}
