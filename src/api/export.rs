//! `GET /v1/cases/export`: one row per (case, department part) — and per feedback item, the
//! office's part — for 考核 evidence, as CSV or Excel. Scoped like `/v1/cases`. Streams: cases
//! are read from the views one at a time in a blocking task; CSV goes out as it is written, and
//! Excel is written in constant-memory mode to an unnamed temporary file that is then sent.

use std::io::{Read, Seek, SeekFrom};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::auth::can_see;
use super::queries::{parse_date, parse_query, QueryResult};
use super::reports::{attachment, csv_line, write_headers, write_row, xlsx_error, Cell, Format, CSV_BOM, XLSX};
use super::{authenticated, ApiError, Shared};
use crate::domain::calendar::beijing;
use crate::domain::event::{Actor, ClockKind, ClockRef, Role, Satisfaction};
use crate::domain::state::{Case, ExtensionStatus, Feedback, FeedbackStatus, PartStatus, State as CaseState, Whistle};
use crate::projector::keys::unit_list_prefix;
use crate::projector::model::CaseView;
use crate::projector::stats::{answer_of, last_settled, part_rating, summons, Answer, Summons};

/// The export's columns.
pub const EXPORT_HEADERS: [&str; 20] = [
    "案件编号",
    "类型",
    "标题",
    "乡镇（街道）/提交单位",
    "紧急",
    "立案时间",
    "案件状态",
    "承办单位",
    "召集时间",
    "响应时限",
    "响应时间",
    "响应情况",
    "退回次数",
    "退回结果",
    "是否办结",
    "办结时间",
    "是否确认",
    "评价",
    "超时次数",
    "延期",
];

/// Rows handed from the reading task to the response at a time.
const EXPORT_CHUNK_ROWS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    format: Option<String>,
}

pub async fn export(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: QueryResult<ExportQuery>,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let q = parse_query(query)?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k @ ("whistle" | "feedback")) => Some(k.to_owned()),
        Some(other) => return Err(ApiError::invalid(format!("kind is whistle or feedback, not {other:?}"))),
    };
    let format = match Format::of(q.format.as_deref(), &headers)? {
        // A browser's plain request asks for CSV too.
        Format::Json | Format::Csv | Format::Html => Format::Csv,
        Format::Xlsx => Format::Xlsx,
    };
    let today = state.clock.now().with_timezone(&beijing()).date_naive();
    let from = parse_date("from", q.from.as_deref(), today - Duration::days(365))?;
    let to = parse_date("to", q.to.as_deref(), today)?;
    if from > to {
        return Err(ApiError::invalid("from is after to"));
    }
    let lists = match (&actor.role, &kind) {
        (Role::Township | Role::Department, _) => vec![unit_list_prefix(&actor.unit)],
        (_, kind) => state.views.status_lists(kind.as_deref())?,
    };
    let (start, end) = (day_start(from), day_start(to + Duration::days(1)));
    // Fails now (a 503), before the download starts, if the views cannot be read.
    let ids = state.views.opened_between(&lists, start, end)?;
    let name = format!("案件明细-{from}-{to}");
    let exporter = Exporter { state: state.clone(), actor, kind };
    match format {
        Format::Xlsx => {
            let file = tokio::task::spawn_blocking(move || exporter.xlsx(ids))
                .await
                .map_err(|e| ApiError::internal(format!("export task failed: {e}")))??;
            Ok(stream_file(file, XLSX, &format!("{name}.xlsx")))
        }
        _ => {
            let (tx, rx) = mpsc::channel::<Chunk>(4);
            tokio::task::spawn_blocking(move || exporter.csv(ids, &tx));
            Ok(attachment(
                Body::from_stream(ReceiverStream::new(rx)),
                "text/csv; charset=utf-8",
                &format!("{name}.csv"),
            ))
        }
    }
}

pub(super) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(beijing()).single())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// A piece of a download, written by a blocking task.
type Chunk = Result<Bytes, std::io::Error>;

/// Sends a file in chunks, from a blocking task.
fn stream_file(mut file: std::fs::File, content_type: &str, filename: &str) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    tokio::task::spawn_blocking(move || {
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buffer[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    attachment(Body::from_stream(ReceiverStream::new(rx)), content_type, filename)
}

struct Exporter {
    state: Shared,
    actor: Actor,
    kind: Option<String>,
}

/// One case to export, as the views list it.
type CaseId = Result<uuid::Uuid, crate::projector::views::ViewError>;

impl Exporter {
    /// The rows of every case in scope, in opening order; `emit` gets each, and stops the
    /// export by returning false.
    fn rows(&self, ids: impl Iterator<Item = CaseId>, mut emit: impl FnMut(Vec<Cell>) -> bool) -> Result<(), ApiError> {
        for id in ids {
            let Some(view) = self.state.views.case(id?)? else { continue };
            if !can_see(&self.state.org, &self.actor, &view.state)
                || self.kind.as_deref().is_some_and(|k| view.kind() != Some(k))
            {
                continue;
            }
            for row in case_rows(&view, &self.state.org.office) {
                if !emit(row) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn csv(self, ids: impl Iterator<Item = CaseId>, tx: &mpsc::Sender<Chunk>) {
        let mut chunk = String::from(CSV_BOM) + &csv_line(EXPORT_HEADERS.map(str::to_owned));
        let mut rows = 0;
        let mut open = true;
        let result = self.rows(ids, |row| {
            chunk.push_str(&csv_line(row.iter().map(Cell::text)));
            rows += 1;
            if rows % EXPORT_CHUNK_ROWS == 0 {
                open = tx.blocking_send(Ok(Bytes::from(std::mem::take(&mut chunk)))).is_ok();
            }
            open
        });
        match result {
            Ok(()) if open => {
                let _ = tx.blocking_send(Ok(Bytes::from(chunk)));
            }
            Ok(()) => {}
            // Headers are gone: the download breaks off, and the reader sees an incomplete file.
            Err(e) => {
                tracing::warn!("export broke off: {}", e.message);
                let _ = tx.blocking_send(Err(std::io::Error::other(e.message)));
            }
        }
    }

    fn xlsx(self, ids: impl Iterator<Item = CaseId>) -> Result<std::fs::File, ApiError> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet_with_constant_memory().map_err(xlsx_error)?;
        sheet.set_name("案件明细").map_err(xlsx_error)?;
        write_headers(sheet, &EXPORT_HEADERS).map_err(xlsx_error)?;
        let mut row = 0u32;
        let mut failed = None;
        self.rows(ids, |cells| {
            row += 1;
            match write_row(sheet, row, &cells) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(xlsx_error(e));
        }
        let mut file = tempfile::tempfile().map_err(|e| ApiError::internal(format!("no temporary file: {e}")))?;
        book.save_to_writer(&mut file).map_err(xlsx_error)?;
        file.seek(SeekFrom::Start(0)).map_err(|e| ApiError::internal(format!("cannot read the export back: {e}")))?;
        Ok(file)
    }
}

fn time(at: Option<DateTime<Utc>>) -> Cell {
    at.map_or(Cell::Empty, |t| Cell::Text(t.with_timezone(&beijing()).format("%Y-%m-%d %H:%M").to_string()))
}

fn yes_no(yes: bool) -> Cell {
    Cell::Text(if yes { "是" } else { "否" }.to_owned())
}

fn satisfaction_zh(s: Option<Satisfaction>) -> Cell {
    Cell::Text(
        match s {
            Some(Satisfaction::Satisfied) => "满意",
            Some(Satisfaction::BasicallySatisfied) => "基本满意",
            Some(Satisfaction::Unsatisfied) => "不满意",
            None => "",
        }
        .to_owned(),
    )
}

fn answer_zh(answer: Answer) -> &'static str {
    match answer {
        Answer::OnTime { .. } => "按时",
        Answer::Late { seconds: Some(_) } => "超时响应",
        Answer::Late { seconds: None } => "超时未响应",
        Answer::Pending => "待响应",
    }
}

pub fn status_zh(view: &CaseView) -> &'static str {
    match view.status() {
        Some("open") => "办理中",
        Some("resolved") => "待确认",
        Some("confirmed") => "已确认办结",
        Some("withdrawn") => "已撤回",
        Some("rated") => "已评价",
        _ => "",
    }
}

/// The deadline of a clock: the running one's, else the last one it had.
fn deadline_of(view: &CaseView, clock: &ClockRef) -> Option<DateTime<Utc>> {
    view.armed
        .iter()
        .find(|a| &a.clock == clock)
        .map(|a| a.due_at)
        .or_else(|| last_settled(view, clock).and_then(|s| s.due_at))
}

fn extensions_zh<K>(case: &Case<K>, keep: impl Fn(&ClockRef) -> bool) -> Cell {
    let asked: Vec<_> = case.extensions.iter().filter(|e| keep(&e.clock)).collect();
    if asked.is_empty() {
        return Cell::Empty;
    }
    let approved = asked.iter().filter(|e| e.status == ExtensionStatus::Approved).count();
    Cell::Text(format!("申请{}次，批准{}次", asked.len(), approved))
}

fn breaches<K>(case: &Case<K>, keep: impl Fn(&ClockRef) -> bool) -> Cell {
    Cell::Int(
        case.alerts.iter().filter(|a| a.stage == crate::domain::event::AlertStage::Breach && keep(&a.clock)).count()
            as i64,
    )
}

/// The export rows of one case.
pub fn case_rows(view: &CaseView, office: &str) -> Vec<Vec<Cell>> {
    match &view.state {
        CaseState::Whistle(case) => whistle_rows(view, case),
        CaseState::Feedback(case) => vec![feedback_row(view, case, office)],
        CaseState::Empty | CaseState::Calendar(_) | CaseState::Report(_) => Vec::new(),
    }
}

fn head(view: &CaseView, kind: &str, township: &str, urgent: bool) -> Vec<Cell> {
    vec![
        Cell::Text(view.case_id.to_string()),
        Cell::Text(kind.to_owned()),
        Cell::Text(view.title()),
        Cell::Text(township.to_owned()),
        yes_no(urgent),
        time(view.opened_at()),
        Cell::Text(status_zh(view).to_owned()),
    ]
}

fn whistle_rows(view: &CaseView, case: &Case<Whistle>) -> Vec<Vec<Cell>> {
    case.kind
        .departments
        .iter()
        .map(|(department, part)| {
            let ack = ClockRef::for_department(ClockKind::Ack, department.clone());
            let own = |c: &ClockRef| {
                c.department.as_deref() == Some(department.as_str())
                    && matches!(c.kind, ClockKind::Ack | ClockKind::WhistleResolve)
            };
            let declines =
                view.settled.iter().filter(|s| s.clock == ack && s.by == "department_declined").count() as i64;
            let response = match summons(view, case, department) {
                Summons::Excluded(why) => format!("不计入：{why}"),
                Summons::Counted { answer, .. } => answer_zh(answer).to_owned(),
            };
            let decline_outcome = match (declines, part.status) {
                (0, _) => "",
                (_, PartStatus::Released) => "编办认定非其职责",
                (_, PartStatus::Declined) => "待编办协调",
                _ => "编办维持召集",
            };
            let mut row = head(view, "吹哨报到", &case.kind.township, view.urgent());
            row.extend([
                Cell::Text(department.clone()),
                time(Some(part.summoned_at)),
                time(deadline_of(view, &ack)),
                time(part.acknowledged_at),
                Cell::Text(response),
                Cell::Int(declines),
                Cell::Text(decline_outcome.to_owned()),
                yes_no(part.status == PartStatus::Handled),
                time(part.handled_at),
                yes_no(view.status() == Some("confirmed")),
                satisfaction_zh(part_rating(case, department)),
                breaches(case, own),
                extensions_zh(case, |c| c.department.as_deref() == Some(department.as_str())),
            ]);
            row
        })
        .collect()
}

fn feedback_row(view: &CaseView, case: &Case<Feedback>, office: &str) -> Vec<Cell> {
    let reply = ClockRef::case_wide(ClockKind::FeedbackReply);
    let resolve = ClockRef::case_wide(ClockKind::FeedbackResolve);
    let submitter = case.kind.submitter.as_ref().map_or("匿名", |a| a.unit.as_str());
    let resolved = matches!(case.kind.status, FeedbackStatus::Resolved | FeedbackStatus::Rated);
    let resolved_at = last_settled(view, &resolve).filter(|s| s.by == "feedback_resolved").map(|s| s.stopped_at);
    let mut row = head(view, "意见直通车", submitter, false);
    row.extend([
        Cell::Text(office.to_owned()),
        time(Some(case.opened_at)),
        time(deadline_of(view, &reply)),
        time(case.kind.first_replied_at),
        Cell::Text(answer_zh(answer_of(view, &reply, &["feedback_replied", "feedback_resolved"])).to_owned()),
        Cell::Empty,
        Cell::Empty,
        yes_no(resolved),
        time(resolved_at.filter(|_| resolved)),
        Cell::Empty,
        satisfaction_zh(case.kind.satisfaction),
        breaches(case, |_| true),
        extensions_zh(case, |_| true),
    ]);
    row
}
