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

#[test]
fn org_check_prints_who_is_told_what_and_refuses_a_webhook_that_would_never_send() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("org.toml");
    let org = |stages: &str, units: &str| {
        format!(
            "townships = [\"东坝镇\"]\ndepartments = [\"住建局\", \"城管局\"]\noffice = \"市减负办\"\ncoordinator = \"市委编办\"\n\
             [[supervisors]]\nunit = \"区委督查室\"\nlevel = 1\n\
             [[alerts.webhooks]]\nname = \"住建局群\"\nurl = \"http://127.0.0.1:9/hook\"\nformat = \"dingtalk\"\n\
             units = [{units}]\nstages = [{stages}]\n"
        )
    };
    std::fs::write(&file, org("\"summons\", \"reminder\"", "\"住建局\"")).unwrap();
    let out = whistle(&["org", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("住建局群 (Dingtalk): warning, summons, reminder — for 住建局"), "{text}");
    assert!(text.contains("城管局: no group takes its notices"), "{text}");
    for (stages, units, complaint) in [
        ("\"sumons\"", "\"住建局\"", "no message is of kind \"sumons\""),
        ("\"summons\"", "\"住房局\"", "\"住房局\" is not a unit of this organisation"),
    ] {
        std::fs::write(&file, org(stages, units)).unwrap();
        let out = whistle(&["org", "check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(complaint), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty());
    }
}

/// The organisation tree of docs/operations.md, as an operator would copy it.
fn documented_tree() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let start = doc.find("One city, 2 districts, 5 townships:").expect("the example is documented");
    let end = doc[start..].find("  Each township is in exactly one district").unwrap() + start;
    let block = doc[start..end].split_once('\n').unwrap().1;
    block.lines().map(|l| l.get(6..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn org_check_prints_the_ladder_of_each_district_and_refuses_a_broken_tree() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("org.toml");
    let tree = documented_tree();
    std::fs::write(&file, &tree).unwrap();
    let out = whistle(&["org", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "东城区 (东坝镇, 北湖街道, 南山镇): level 1 东城区委督查室; level 2 东城区委办, 市委督查室; level 3 市委办公厅"
        ),
        "{text}"
    );
    assert!(text.contains("西城区 (西湖街道, 白云镇): level 1 西城区委督查室; level 2 市委督查室; level 3 市委办公厅"));
    let broken = tree.replace("[\"西湖街道\", \"白云镇\"]", "[\"西湖街道\", \"东坝镇\"]");
    std::fs::write(&file, broken).unwrap();
    let out = whistle(&["org", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"东坝镇\" is in two districts"));
    assert!(out.stdout.is_empty());
}

#[test]
fn token_add_with_a_link_prints_a_sign_in_link_and_refuses_a_bad_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = whistle(&["token", "add", "--role", "township", "--unit", "东坝镇", "--link", "ftp://x", "--data", data]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--link is the dashboard's address"));
    assert!(out.stdout.is_empty());
    let out = whistle(&[
        "token",
        "add",
        "--role",
        "township",
        "--unit",
        "东坝镇",
        "--link",
        "http://127.0.0.1:8080/",
        "--data",
        data,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[1], format!("http://127.0.0.1:8080/#signin={}", lines[0]));
}
