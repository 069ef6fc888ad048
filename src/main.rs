use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use whistle::cli::{
    calendar_due_line, shown, AlertsCommand, CalendarCommand, CasesCommand, Cli, ClientArgs, Command, FeedbackCommand,
    OrgCommand, ProgressReport, ServeArgs, StoreArgs, TokenCommand, ViewsCommand,
};
use whistle::client::{alert_line, case_line, Client, ClientError};
use whistle::domain::Calendar;
use whistle::projector::{self, Projector};
use whistle::service::{load_policy, open_views, with_org_ladder, LogHandle};

/// Exit code for bad input, as clap uses for bad arguments.
const EXIT_BAD_INPUT: u8 = 2;

/// A failure with the exit code it deserves.
struct Failure {
    code: u8,
    message: String,
}

fn bad_input(message: impl Into<String>) -> Failure {
    Failure { code: EXIT_BAD_INPUT, message: message.into() }
}

fn failed(message: impl std::fmt::Display) -> Failure {
    Failure { code: 1, message: message.to_string() }
}

/// mimalloc: the projector and the HTTP handlers allocate from several threads at once, where
/// the system allocator's arena locks showed up in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(args) if args.log_format == whistle::cli::LogFormat::Json);
    // The bench runs whole services inside itself: their routine lines would bury its table.
    let quiet = matches!(&cli.command, Command::Bench { .. });
    init_logging(json_logs, if quiet { "warn" } else { "warn,whistle=info" });
    let outcome = match cli.command {
        Command::Calendar { command: CalendarCommand::Due { from, working_days, data } } => {
            published_calendar(data.as_deref()).and_then(|calendar| {
                calendar_due_line(&calendar, from, working_days).map(|line| println!("{line}")).map_err(bad_input)
            })
        }
        Command::Token { command: TokenCommand::Add { role, unit, label, data, config, link } } => {
            add_token(role, &unit, &label, &data, config.as_deref(), link.as_deref())
        }
        Command::Org { command: OrgCommand::Check { file } } => std::fs::read_to_string(&file)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", shown(&file))))
            .and_then(|text| {
                whistle::api::auth::Org::from_toml(&text).map_err(|e| bad_input(format!("{}: {e}", shown(&file))))
            })
            .map(|org| print!("{} is valid. Who is told what:\n{}", shown(&file), org.routing())),
        command => runtime().and_then(|rt| rt.block_on(run_async(command))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHISTLE_LOG").unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let policy = load_policy(args.store.policy.as_deref()).map_err(bad_input)?;
    let options = whistle::serve::ServeOptions {
        data: args.store.data.clone(),
        listen: args.listen,
        nats: args.store.nats.options(),
        config: args.config.clone(),
        policy,
        clock: Arc::new(whistle::clock::SystemClock),
        stop: None,
        cache_bytes: args.store.cache_bytes(),
    };
    whistle::serve::serve(options).await.map_err(|e| match e {
        whistle::serve::ServeError::Config(m) => bad_input(m),
        whistle::serve::ServeError::Failed(m) => failed(m),
    })
}

fn add_token(
    role: whistle::domain::event::Role,
    unit: &str,
    label: &str,
    data: &std::path::Path,
    config: Option<&std::path::Path>,
    link: Option<&str>,
) -> Result<(), Failure> {
    if let Some(url) = link {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains('#') {
            return Err(bad_input(format!(
                "--link is the dashboard's address, like http://127.0.0.1:8080, not {url:?}"
            )));
        }
    }
    let (org, _) = whistle::serve::load_or_create_org(data, config).map_err(|e| bad_input(e.to_string()))?;
    let actor = whistle::domain::event::Actor::new(role, unit.trim());
    if !org.knows(&actor) {
        return Err(bad_input(format!("{} is not a {} of this organisation", actor.unit, role.as_str())));
    }
    std::fs::create_dir_all(data).map_err(|e| failed(format!("cannot create {}: {e}", data.display())))?;
    let path = whistle::serve::DataFiles::of(data).tokens;
    let token = whistle::api::auth::add_token(&path, &actor, label).map_err(failed)?;
    println!("{token}");
    if let Some(url) = link {
        println!("{}/#signin={token}", url.trim_end_matches('/'));
    }
    eprintln!(
        "token for {} {} stored (as a hash) in {}; it is not shown again",
        role.as_str(),
        actor.unit,
        shown(&path)
    );
    if link.is_some() {
        eprintln!(
            "the link signs in whoever opens it first-hand: the page keeps the token and clears the address bar; \
             the session ends with 退出 on that page, or for every browser when the token's line is deleted from tokens.toml"
        );
    }
    Ok(())
}

async fn run_client(command: Command) -> Result<(), ClientError> {
    use reqwest::Method;
    use serde_json::{json, Value};
    let post = |client: &ClientArgs, path: String, body: Value| {
        let client = client.clone();
        async move {
            let c = Client::new(&client.url, &client.token)?;
            let answer = c.json(Method::POST, &path, Some(body)).await?;
            println!("{}", case_line(&answer["case"]));
            if let Some(code) = answer["follow_up_code"].as_str() {
                println!("follow-up code (shown once; keep it to read replies and rate): {code}");
            }
            Ok::<(), ClientError>(())
        }
    };
    match command {
        Command::Raise { client, title, description, departments, location, urgent } => {
            let urgency = if urgent { "urgent" } else { "normal" };
            let body = json!({ "title": title, "description": description, "departments": departments, "location": location, "urgency": urgency });
            post(&client, "/v1/whistles".into(), body).await
        }
        Command::Ack { client, case } => post(&client, format!("/v1/whistles/{case}/ack"), json!({})).await,
        Command::Decline { client, case, reason } => {
            post(&client, format!("/v1/whistles/{case}/decline"), json!({ "reason": reason })).await
        }
        Command::Handled { client, case, summary } => {
            post(&client, format!("/v1/whistles/{case}/handled"), json!({ "summary": summary })).await
        }
        Command::Confirm { client, case, satisfaction, rate } => {
            let mut ratings = serde_json::Map::new();
            for pair in &rate {
                let Some((department, rating)) = pair.split_once('=') else {
                    return Err(ClientError { code: 2, message: format!("--rate is DEPARTMENT=RATING, not {pair:?}") });
                };
                ratings.insert(department.trim().to_owned(), json!(rating.trim()));
            }
            let body = json!({ "satisfaction": satisfaction, "ratings": ratings });
            post(&client, format!("/v1/whistles/{case}/confirm"), body).await
        }
        Command::Feedback { command: FeedbackCommand::Submit { client, topic, body, anonymous } } => {
            post(&client, "/v1/feedback".into(), json!({ "topic": topic, "body": body, "anonymous": anonymous })).await
        }
        Command::Feedback { command: FeedbackCommand::Reply { client, case, body } } => {
            post(&client, format!("/v1/feedback/{case}/reply"), json!({ "body": body })).await
        }
        Command::Feedback { command: FeedbackCommand::Resolve { client, case, summary } } => {
            post(&client, format!("/v1/feedback/{case}/resolve"), json!({ "summary": summary })).await
        }
        Command::Cases { command: CasesCommand::List { client, kind, status, overdue, unit } } => {
            let c = Client::new(&client.url, &client.token)?;
            let mut query = vec![];
            for (k, v) in [("kind", kind), ("status", status), ("unit", unit)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(&v)));
                }
            }
            if overdue {
                query.push("overdue=true".into());
            }
            let answer = c.json(Method::GET, &format!("/v1/cases?{}", query.join("&")), None).await?;
            for case in answer["items"].as_array().into_iter().flatten() {
                println!("{}", case_line(case));
            }
            Ok(())
        }
        Command::Cases { command: CasesCommand::Show { client, case } } => {
            let c = Client::new(&client.url, &client.token)?;
            let answer = c.json(Method::GET, &format!("/v1/cases/{case}"), None).await?;
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            Ok(())
        }
        Command::Alerts { command: AlertsCommand::List { client, open } } => {
            let c = Client::new(&client.url, &client.token)?;
            let answer = c.json(Method::GET, &format!("/v1/alerts?open={open}"), None).await?;
            for alert in answer["items"].as_array().into_iter().flatten() {
                println!("{}", alert_line("alert", alert));
            }
            Ok(())
        }
        Command::Alerts { command: AlertsCommand::Ack { client, alert } } => {
            let c = Client::new(&client.url, &client.token)?;
            c.json(Method::POST, &format!("/v1/alerts/{alert}/ack"), Some(json!({}))).await?;
            println!("acknowledged {alert}");
            Ok(())
        }
        Command::Alerts { command: AlertsCommand::Watch { client } } => {
            Client::new(&client.url, &client.token)?.watch().await
        }
        Command::Stats { client, by, from, to, csv } => {
            let c = Client::new(&client.url, &client.token)?;
            let mut path = format!("/v1/stats?by={}", urlencode(&by));
            for (k, v) in [("from", from), ("to", to)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", urlencode(&v)));
                }
            }
            if csv {
                print!("{}", c.text(&path, "text/csv").await?);
                return Ok(());
            }
            let answer = c.json(Method::GET, &path, None).await?;
            println!("{:<14} {:>6} {:>16} {:>16} {:>16}", "unit", "cases", "响应率", "解决率", "满意率");
            // Each rate with its numerator and denominator, so it can be checked.
            let pct = |row: &Value, rate: &str| match row[format!("{rate}_rate")].as_f64() {
                Some(f) => {
                    format!(
                        "{:.1}% {}/{}",
                        f * 100.0,
                        row[format!("{rate}_numerator")],
                        row[format!("{rate}_denominator")]
                    )
                }
                None => "—".to_owned(),
            };
            for row in answer["rows"].as_array().into_iter().flatten() {
                println!(
                    "{:<14} {:>6} {:>16} {:>16} {:>16}",
                    row["unit"].as_str().unwrap_or(""),
                    row["cases"],
                    pct(row, "response"),
                    pct(row, "resolution"),
                    pct(row, "satisfaction")
                );
            }
            Ok(())
        }
        _ => unreachable!("only client commands come here"),
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(failed)
}

async fn run_async(command: Command) -> Result<(), Failure> {
    match command {
        Command::Rebuild(store) => rebuild(store).await,
        Command::Check { data } => check(&data),
        Command::Project { store, follow } => project(store, follow).await,
        Command::Views { command: ViewsCommand::Digest(store) } => {
            let views = existing_views(&store)?;
            println!("{}", views.digest().map_err(failed)?);
            Ok(())
        }
        Command::Views { command: ViewsCommand::Compact(store) } => {
            let views = existing_views(&store)?;
            let c = views.compact().map_err(failed)?;
            println!(
                "compacted the views of {}: {} → {} bytes on disk ({} bytes of keys and values)",
                shown(&store.data),
                c.bytes_before,
                c.bytes_after,
                c.live_bytes
            );
            Ok(())
        }
        Command::Views { command: ViewsCommand::Dictionary { store, out, max_bytes } } => {
            let views = existing_views(&store)?;
            let samples = views.sample_values(7).map_err(failed)?;
            if samples.is_empty() {
                return Err(bad_input(format!("the views of {} are empty", shown(&store.data))));
            }
            let dictionary = whistle::projector::codec::train_dictionary(&samples, max_bytes).map_err(failed)?;
            std::fs::write(&out, &dictionary).map_err(failed)?;
            println!("wrote a {}-byte dictionary to {} from {} values", dictionary.len(), shown(&out), samples.len());
            Ok(())
        }
        Command::Sim { store, events, seed, lanes } => {
            let handle = LogHandle::open(&store.data, store.nats.options().as_ref()).await.map_err(failed)?;
            let start = chrono::Utc::now();
            let stored = whistle::sim::fill(handle.log().as_ref(), seed, lanes, events, start).await.map_err(failed)?;
            println!("appended {stored} events; log head {}", handle.log().head().await.map_err(failed)?);
            handle.close().await.map_err(failed)
        }
        Command::Calendar { command: CalendarCommand::Publish { file, service_url, service_token, store } } => {
            publish_calendar(&file, service_url.zip(service_token), *store).await
        }
        Command::Serve(args) => serve(args).await,
        Command::Bench { quick, events, nats, json, sections } => {
            let options = whistle::bench::BenchOptions {
                quick,
                events: events.unwrap_or(if quick { 20_000 } else { 1_000_000 }),
                nats: nats.map(whistle::log::nats::NatsOptions::new),
                json,
                sections,
            };
            if let Some(nats) = &options.nats {
                whistle::bench::check_nats_server(nats).await.map_err(bad_input)?;
            }
            whistle::bench::run(options).await.map(|_| ()).map_err(failed)
        }
        Command::Demo { listen, exit, ack_clock } => whistle::demo::run(listen, exit, ack_clock).await.map_err(failed),
        command @ (Command::Raise { .. }
        | Command::Ack { .. }
        | Command::Decline { .. }
        | Command::Handled { .. }
        | Command::Confirm { .. }
        | Command::Feedback { .. }
        | Command::Cases { .. }
        | Command::Alerts { .. }
        | Command::Stats { .. }) => run_client(command).await.map_err(|e| Failure { code: e.code, message: e.message }),
        Command::Calendar { command: CalendarCommand::Due { .. } } | Command::Token { .. } | Command::Org { .. } => {
            unreachable!("handled without a runtime")
        }
    }
}

/// The shipped calendar plus the years published in `data`'s embedded log, if given.
fn published_calendar(data: Option<&std::path::Path>) -> Result<Calendar, Failure> {
    let mut calendar = Calendar::official();
    if let Some(data) = data {
        let log = data.join("log");
        if !log.join("records").exists() {
            return Err(bad_input(format!("{} holds no embedded log", shown(data))));
        }
        for schedule in whistle::log::embedded::EmbeddedLog::published_calendars(&log).map_err(failed)? {
            calendar.load(&schedule);
        }
    }
    Ok(calendar)
}

async fn publish_calendar(
    file: &std::path::Path,
    through: Option<(String, String)>,
    store: StoreArgs,
) -> Result<(), Failure> {
    use whistle::clock::{Clock, SystemClock};
    use whistle::domain::command::{Command as DomainCommand, CommandBody};
    use whistle::domain::event::{Actor, Role, CALENDAR_CASE_ID};
    let text = std::fs::read_to_string(file).map_err(|e| bad_input(format!("cannot read {}: {e}", file.display())))?;
    let schedule =
        whistle::domain::YearSchedule::from_toml(&text).map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
    let year = schedule.year;
    if let Some((url, token)) = through {
        let client =
            whistle::client::Client::new(&url, &token).map_err(|e| Failure { code: e.code, message: e.message })?;
        let body = serde_json::to_value(&schedule).map_err(failed)?;
        let done = client
            .json(reqwest::Method::POST, &format!("/v1/calendar/{year}"), Some(body))
            .await
            .map_err(|e| Failure { code: e.code, message: e.message })?;
        println!(
            "published the {year} calendar through {url} at log position {}; every instance picks it up",
            done["position"]
        );
        return Ok(());
    }
    let handle = LogHandle::open(&store.data, store.nats.options().as_ref()).await.map_err(|e| {
        if e.to_string().contains("in use by another whistle process") {
            failed(format!(
                "{e}: a service is running on this folder; publish through it with --url (WHISTLE_URL) and an admin \
                 token in --token (WHISTLE_TOKEN)"
            ))
        } else {
            failed(e)
        }
    })?;
    let cmd = DomainCommand::new(
        uuid::Uuid::now_v7(),
        CALENDAR_CASE_ID,
        Actor::new(Role::Admin, "whistle calendar publish"),
        CommandBody::PublishCalendar { schedule },
    );
    let done =
        whistle::execute::execute(handle.log().as_ref(), &cmd, SystemClock.now()).await.map_err(|e| match e {
            whistle::execute::ExecuteError::Rejected(r) => bad_input(r.to_string()),
            other => failed(other),
        })?;
    println!(
        "published the {year} calendar at log position {}; open deadlines are recomputed as the views catch up",
        done.position
    );
    handle.close().await.map_err(failed)
}

/// `whistle check`: reads the embedded log without taking it (it may be in use), then the
/// views if no service holds them.
/// The views of a data folder that has them; a folder without views is bad input (and nothing
/// is created in it).
fn existing_views(store: &StoreArgs) -> Result<whistle::projector::views::Views, Failure> {
    let path = whistle::service::views_path(&store.data);
    if !path.is_dir() {
        return Err(bad_input(format!("{} holds no views (no {})", shown(&store.data), shown(&path))));
    }
    open_views(&store.data, store.cache_bytes()).map_err(failed)
}

fn check(data: &std::path::Path) -> Result<(), Failure> {
    let log_dir = data.join("log");
    if !log_dir.join("records").exists() {
        return Err(bad_input(format!("{} holds no embedded log (no {}/records)", shown(data), shown(&log_dir))));
    }
    let report = whistle::log::embedded::EmbeddedLog::check(&log_dir).map_err(|e| failed(format!("log: {e}")))?;
    println!("log: {} records, every checksum and position right", report.records);
    if let whistle::log::frame::Ending::TornTail { end, bytes } = report.ending {
        println!(
            "log: {bytes} bytes of an interrupted write after byte {end} (never acknowledged; cut off on next start)"
        );
    }
    match whistle::projector::views::Views::open(whistle::service::views_path(data)) {
        Ok(views) => {
            views
                .verify()
                .map_err(|e| failed(format!("views: {e}; the next start sets them aside and rebuilds them")))?;
            let checkpoint = views.checkpoint().map_err(failed)?;
            if checkpoint > report.records {
                return Err(failed(format!(
                    "views have applied up to record {checkpoint} but the log holds {}: the log has lost records",
                    report.records
                )));
            }
            let sizes = views.live_size().map_err(failed)?;
            let (keys, bytes) = sizes.values().fold((0, 0), |(k, b), s| (k + s.keys, b + s.bytes));
            println!(
                "views: readable, applied up to record {checkpoint}; {keys} keys, {bytes} bytes of keys and values"
            );
            for (prefix, size) in &sizes {
                println!(
                    "views: {prefix:<14} {:>9} keys {:>12} bytes (largest value {} bytes)",
                    size.keys, size.bytes, size.largest
                );
            }
        }
        Err(whistle::projector::views::ViewError::Damaged(e)) => {
            return Err(failed(format!("views: {e}; the next start sets them aside and rebuilds them")))
        }
        Err(e) if e.to_string().contains("could not acquire lock") => {
            println!("views: in use by a running service, not checked (stop it to check them too)")
        }
        Err(e) => println!("views: not checked ({e})"),
    }
    Ok(())
}

async fn rebuild(store: StoreArgs) -> Result<(), Failure> {
    let policy = load_policy(store.policy.as_deref()).map_err(bad_input)?;
    let policy = with_org_ladder(policy, &store.data).map_err(bad_input)?;
    let handle = LogHandle::open(&store.data, store.nats.options().as_ref()).await.map_err(failed)?;
    let views = open_views(&store.data, store.cache_bytes()).map_err(failed)?;
    let started = std::time::Instant::now();
    let mut progress = ProgressReport::new("rebuild");
    let result = projector::rebuild(views, handle.log().as_ref(), policy, Calendar::official(), |done, total| {
        progress.update(done, total)
    })
    .await;
    progress.finish();
    let (totals, digest) = result.map_err(|e| failed(format!("rebuild stopped: {e}")))?;
    println!(
        "rebuilt views of {} from {} records ({} events) in {:.1}s; views digest {digest}",
        shown(&store.data),
        totals.records,
        totals.events,
        started.elapsed().as_secs_f64()
    );
    handle.close().await.map_err(failed)
}

async fn project(store: StoreArgs, follow: bool) -> Result<(), Failure> {
    let policy = load_policy(store.policy.as_deref()).map_err(bad_input)?;
    let policy = with_org_ladder(policy, &store.data).map_err(bad_input)?;
    let handle = LogHandle::open(&store.data, store.nats.options().as_ref()).await.map_err(failed)?;
    let views = open_views(&store.data, store.cache_bytes()).map_err(failed)?;
    let mut projector = Projector::new(views, policy, Calendar::official()).map_err(failed)?;
    let log = handle.log();
    if follow {
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        projector.run(Arc::clone(&log), stop).await.map_err(failed)?;
    } else {
        let totals = projector.catch_up(log.as_ref(), false, |_, _| {}).await.map_err(failed)?;
        projector.views().flush().await.map_err(failed)?;
        println!(
            "projected {} records ({} events, {} dead letters); checkpoint {}",
            totals.records,
            totals.events,
            totals.dead_letters,
            projector.views().checkpoint().map_err(failed)?
        );
    }
    drop(log);
    handle.close().await.map_err(failed)
}
