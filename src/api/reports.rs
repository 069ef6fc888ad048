//! 三率 for supervisors: `/v1/stats` (any period, one dimension), the periodic 通报
//! (`/v1/reports/{monthly|weekly}`: rankings with the change against the previous period) and
//! the per-case export (`/v1/cases/export`). The rules are docs/statistics.md's; the counting is
//! [`crate::projector::stats`]'s. Every rate goes out with its numerator and denominator.
//!
//! Formats: JSON by default; CSV (`Accept: text/csv` or `format=csv`), Excel (`Accept:` the
//! xlsx type or `format=xlsx`) and, for 通报, a printable page (`format=html`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{json, Value};

use super::queries::{parse_date, parse_query, QueryResult};
use super::{authenticated, ApiError, Shared};
use crate::domain::calendar::beijing;
use crate::domain::event::{Actor, Role};
use crate::projector::stats::{StatsCell, StatsDimension, ROLE_ROW};
use crate::reports::{last_whole_period, rank, Period, PeriodKind, RankedRow};

pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The format a caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Xlsx,
    Html,
}

impl Format {
    /// From `format=` if given, else from `Accept`.
    pub fn of(query: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
        match query {
            Some("json") => return Ok(Format::Json),
            Some("csv") => return Ok(Format::Csv),
            Some("xlsx") => return Ok(Format::Xlsx),
            Some("html") => return Ok(Format::Html),
            Some(other) => return Err(ApiError::invalid(format!("format is json, csv, xlsx or html, not {other:?}"))),
            None => {}
        }
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Ok(if accept.contains(XLSX) {
            Format::Xlsx
        } else if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains("text/html") {
            Format::Html
        } else {
            Format::Json
        })
    }
}

/// Who may read statistics: supervisors, admins, the office and the coordinator.
fn may_read_statistics(state: &Shared, actor: &Actor) -> Result<(), ApiError> {
    if matches!(actor.role, Role::Supervisor | Role::Admin | Role::Office | Role::Coordinator) {
        Ok(())
    } else {
        Err(super::refuse(state, actor, "read statistics"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    format: Option<String>,
}

pub async fn stats(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: QueryResult<StatsQuery>,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    may_read_statistics(&state, &actor)?;
    let q = parse_query(query)?;
    let district = state.org.scope_district(&actor);
    // A district's supervisors read their townships by default; the city reads departments.
    let by = q.by.as_deref().unwrap_or(if district.is_some() { "township" } else { "department" });
    let dimension = StatsDimension::parse(by).ok_or_else(|| {
        ApiError::invalid(format!("by is department, township, district, topic, office or coordinator, not {by:?}"))
    })?;
    if district.is_some() && !matches!(dimension, StatsDimension::Township | StatsDimension::District) {
        return Err(super::refuse(
            &state,
            &actor,
            "read statistics other than its district's, by township or district",
        ));
    }
    let format = Format::of(q.format.as_deref(), &headers)?;
    let today = state.clock.now().with_timezone(&beijing()).date_naive();
    let first = today.with_day(1).unwrap_or(today);
    let from = parse_date("from", q.from.as_deref(), first)?;
    let to = parse_date("to", q.to.as_deref(), today)?;
    if from > to {
        return Err(ApiError::invalid("from is after to"));
    }
    let mut rows = rows(&state, dimension, from, to)?;
    if let Some(district) = district {
        rows.retain(|(unit, _)| match dimension {
            StatsDimension::District => unit == district,
            _ => state.org.district_of(unit) == Some(district),
        });
    }
    let title = format!("{}三率 {from} 至 {to}", dimension.label_zh());
    match format {
        Format::Json => {
            let rows: Vec<Value> = rows.iter().map(|(unit, cell)| row_json(unit, cell)).collect();
            Ok(Json(json!({ "from": from, "to": to, "by": dimension, "rows": rows })).into_response())
        }
        Format::Csv => {
            Ok(csv_download(&[(None, &stats_table(dimension, &rows))], &format!("三率-{by}-{from}-{to}.csv")))
        }
        Format::Xlsx => {
            let bytes = xlsx(&[(dimension.label_zh(), stats_table(dimension, &rows))])?;
            Ok(download(bytes, XLSX, &format!("三率-{by}-{from}-{to}.xlsx")))
        }
        Format::Html => Ok(html_page(&title, None, &[(dimension.label_zh(), stats_table(dimension, &rows))])),
    }
}

/// The row of townships that belong to no district (an organisation without districts).
pub const WHOLE_CITY_ROW: &str = "全市";

/// The rows of one dimension over `[from, to]`: every unit the organisation names for it (a
/// unit with nothing counted has a row of nulls), plus any other unit the cases name.
pub fn rows(
    state: &Shared,
    dimension: StatsDimension,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, StatsCell)>, ApiError> {
    if dimension == StatsDimension::District {
        let mut districts: std::collections::BTreeMap<String, StatsCell> =
            state.org.districts.iter().map(|d| (d.name.clone(), StatsCell::default())).collect();
        for (township, cell) in rows(state, StatsDimension::Township, from, to)? {
            let district = state.org.district_of(&township).unwrap_or(WHOLE_CITY_ROW).to_owned();
            districts.entry(district).or_default().add(&cell, 1);
        }
        return Ok(districts.into_iter().collect());
    }
    let mut cells = state.views.stats(dimension, &from.to_string(), &to.to_string())?;
    let named: Vec<String> = match dimension {
        StatsDimension::Department => state.org.departments.clone(),
        StatsDimension::Township => state.org.townships.clone(),
        StatsDimension::Topic => {
            crate::domain::event::FeedbackTopic::ALL.iter().map(|t| t.label_zh().to_owned()).collect()
        }
        StatsDimension::Office | StatsDimension::Coordinator => vec![ROLE_ROW.to_owned()],
        StatsDimension::District => Vec::new(),
    };
    for unit in named {
        cells.entry(unit).or_default();
    }
    let name_of = |unit: String| match dimension {
        StatsDimension::Office => state.org.office.clone(),
        StatsDimension::Coordinator => state.org.coordinator.clone(),
        _ => unit,
    };
    Ok(cells.into_iter().map(|(unit, cell)| (name_of(unit), cell)).collect())
}

/// One row: the counts, and each rate with its numerator and denominator.
pub fn row_json(unit: &str, cell: &StatsCell) -> Value {
    let [response, resolution, satisfaction] = cell.rates();
    json!({
        "unit": unit,
        "cases": cell.cases,
        "excluded": cell.excluded,
        "response_rate": response,
        "response_numerator": cell.on_time,
        "response_denominator": cell.response_base,
        "late": cell.late,
        "pending": cell.pending,
        "resolution_rate": resolution,
        "resolution_numerator": cell.resolved,
        "resolution_denominator": cell.resolution_base,
        "resolved_late": cell.resolved_late,
        "satisfaction_rate": satisfaction,
        "satisfaction_numerator": cell.satisfied + cell.basically_satisfied,
        "satisfaction_denominator": cell.rated,
        "satisfied": cell.satisfied,
        "basically_satisfied": cell.basically_satisfied,
        "unsatisfied": cell.unsatisfied,
        "declined": cell.declined,
        "reopened": cell.reopened,
        "breaches": cell.breaches,
        "average_answer_minutes": cell.average_answer_minutes(),
    })
}

/// A table: Chinese headers and rows of cells.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// One value of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// A rate, shown as a percentage to one decimal.
    Rate(Option<f64>),
    /// A change of a rate, in percentage points.
    Change(Option<f64>),
    Empty,
}

impl Cell {
    /// As a CSV field or the printable page shows it.
    pub(super) fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Rate(Some(r)) => format!("{:.1}%", r * 100.0),
            Cell::Change(Some(c)) => format!("{:+.1}", c * 100.0),
            Cell::Rate(None) | Cell::Change(None) | Cell::Empty => String::new(),
        }
    }
}

/// The columns of a statistics row, in order (Chinese headers).
const STATS_HEADERS: [&str; 20] = [
    "单位",
    "案件数",
    "不计入",
    "响应率",
    "按时响应",
    "应响应",
    "超时响应",
    "待响应",
    "解决率",
    "已解决",
    "应解决",
    "逾期解决",
    "满意率",
    "满意及基本满意",
    "已评价",
    "不满意",
    "退回",
    "重新打开",
    "超时次数",
    "平均响应用时（分钟）",
];

fn stats_cells(unit: &str, cell: &StatsCell) -> Vec<Cell> {
    let [response, resolution, satisfaction] = cell.rates();
    vec![
        Cell::Text(unit.to_owned()),
        Cell::Int(cell.cases),
        Cell::Int(cell.excluded),
        Cell::Rate(response),
        Cell::Int(cell.on_time),
        Cell::Int(cell.response_base),
        Cell::Int(cell.late),
        Cell::Int(cell.pending),
        Cell::Rate(resolution),
        Cell::Int(cell.resolved),
        Cell::Int(cell.resolution_base),
        Cell::Int(cell.resolved_late),
        Cell::Rate(satisfaction),
        Cell::Int(cell.satisfied + cell.basically_satisfied),
        Cell::Int(cell.rated),
        Cell::Int(cell.unsatisfied),
        Cell::Int(cell.declined),
        Cell::Int(cell.reopened),
        Cell::Int(cell.breaches),
        cell.average_answer_minutes().map_or(Cell::Empty, |m| Cell::Text(format!("{m:.1}"))),
    ]
}

/// The headers of a statistics table, the unit column named for the dimension.
fn stats_headers(dimension: StatsDimension) -> Vec<String> {
    let mut headers: Vec<String> = STATS_HEADERS.iter().map(|h| (*h).to_owned()).collect();
    headers[0] = dimension.label_zh().to_owned();
    headers
}

fn stats_table(dimension: StatsDimension, rows: &[(String, StatsCell)]) -> Table {
    Table { headers: stats_headers(dimension), rows: rows.iter().map(|(unit, cell)| stats_cells(unit, cell)).collect() }
}

/// A ranked statistics table: the rank first, the change against the previous period last.
fn ranked_table(dimension: StatsDimension, ranked: &[RankedRow]) -> Table {
    let mut headers = stats_headers(dimension);
    headers.insert(0, "排名".to_owned());
    headers.extend(["响应率变化（百分点）", "解决率变化（百分点）", "满意率变化（百分点）"].map(str::to_owned));
    let rows = ranked
        .iter()
        .map(|r| {
            let mut cells = vec![Cell::Int(r.rank as i64)];
            cells.extend(stats_cells(&r.unit, &r.cell));
            cells.extend(r.change.iter().map(|c| Cell::Change(*c)));
            cells
        })
        .collect();
    Table { headers, rows }
}

/// Excel reads a CSV file as UTF-8 (the Chinese) when it starts with a byte-order mark.
pub(super) const CSV_BOM: &str = "\u{feff}";

/// One CSV line (RFC 4180).
pub(super) fn csv_line(fields: impl IntoIterator<Item = String>) -> String {
    fields.into_iter().map(|f| csv_field(&f)).collect::<Vec<_>>().join(",") + "\r\n"
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Tables as one CSV download: each after its title line, if it has one, and a blank line
/// between them.
fn csv_download(tables: &[(Option<&str>, &Table)], filename: &str) -> Response {
    let mut text = String::from(CSV_BOM);
    for (i, (title, table)) in tables.iter().enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        if let Some(title) = title {
            text.push_str(&csv_line([(*title).to_owned()]));
        }
        text.push_str(&csv_line(table.headers.iter().cloned()));
        for row in &table.rows {
            text.push_str(&csv_line(row.iter().map(Cell::text)));
        }
    }
    download(text.into_bytes(), "text/csv; charset=utf-8", filename)
}

/// A file to download.
fn download(bytes: Vec<u8>, content_type: &str, filename: &str) -> Response {
    attachment(Body::from(bytes), content_type, filename)
}

/// A body to download, named in UTF-8: `attachment; filename*=UTF-8''…` (RFC 6266 / 5987).
pub(super) fn attachment(body: Body, content_type: &str, filename: &str) -> Response {
    let disposition = format!("attachment; filename*=UTF-8''{}", percent(filename));
    ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

pub(super) fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An Excel workbook of one sheet per table.
fn xlsx(sheets: &[(&str, Table)]) -> Result<Vec<u8>, ApiError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    for (name, table) in sheets {
        let sheet = book.add_worksheet();
        write_sheet(sheet, name, table).map_err(xlsx_error)?;
    }
    book.save_to_buffer().map_err(xlsx_error)
}

pub(super) fn xlsx_error(e: rust_xlsxwriter::XlsxError) -> ApiError {
    ApiError::internal(format!("cannot write the Excel file: {e}"))
}

fn write_sheet(
    sheet: &mut rust_xlsxwriter::Worksheet,
    name: &str,
    table: &Table,
) -> Result<(), rust_xlsxwriter::XlsxError> {
    sheet.set_name(name)?;
    write_headers(sheet, &table.headers)?;
    for (r, row) in table.rows.iter().enumerate() {
        write_row(sheet, r as u32 + 1, row)?;
    }
    Ok(())
}

/// Writes a sheet's first row: the headers, in bold.
pub(super) fn write_headers(
    sheet: &mut rust_xlsxwriter::Worksheet,
    headers: &[impl AsRef<str>],
) -> Result<(), rust_xlsxwriter::XlsxError> {
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h.as_ref(), &bold)?;
    }
    Ok(())
}

/// Writes one row of cells: numbers as numbers, rates as fractions with a percent format.
pub(super) fn write_row(
    sheet: &mut rust_xlsxwriter::Worksheet,
    row: u32,
    cells: &[Cell],
) -> Result<(), rust_xlsxwriter::XlsxError> {
    let percent = rust_xlsxwriter::Format::new().set_num_format("0.0%");
    for (c, cell) in cells.iter().enumerate() {
        let col = c as u16;
        match cell {
            Cell::Text(s) => {
                sheet.write_string(row, col, s)?;
            }
            Cell::Int(n) => {
                sheet.write_number(row, col, *n as f64)?;
            }
            Cell::Rate(Some(r)) => {
                sheet.write_number_with_format(row, col, *r, &percent)?;
            }
            Cell::Change(Some(c)) => {
                sheet.write_number(row, col, (c * 1000.0).round() / 10.0)?;
            }
            Cell::Rate(None) | Cell::Change(None) | Cell::Empty => {}
        }
    }
    Ok(())
}

/// A printable page of tables: Chinese, print CSS, no external assets.
fn html_page(title: &str, subtitle: Option<&str>, tables: &[(&str, Table)]) -> Response {
    let mut body = format!("<h1>{}</h1>", escape(title));
    if let Some(subtitle) = subtitle {
        body.push_str(&format!("<p>{}</p>", escape(subtitle)));
    }
    for (name, table) in tables {
        body.push_str(&format!("<h2>{}</h2><table><thead><tr>", escape(name)));
        for h in &table.headers {
            body.push_str(&format!("<th>{}</th>", escape(h)));
        }
        body.push_str("</tr></thead><tbody>");
        for row in &table.rows {
            body.push_str("<tr>");
            for cell in row {
                body.push_str(&format!("<td>{}</td>", escape(&cell.text())));
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table>");
    }
    html_document(title, &body)
}

fn html_document(title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>{}<p class=\"note\">响应率、解决率、满意率的计算规则见 docs/statistics.md；每个比率均列出分子与分母。</p></body></html>",
        escape(title),
        PRINT_CSS,
        body
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
        ],
        page,
    )
        .into_response()
}

const PRINT_CSS: &str = "body{font-family:'PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;margin:2em;color:#111}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;width:100%;font-size:.85em}th,td{border:1px solid #999;padding:.25em .4em;text-align:right}\
th{background:#eee}td:first-child,td:nth-child(2){text-align:left}.note{font-size:.8em;color:#555}\
@media print{body{margin:0}h2{page-break-before:auto}tr{page-break-inside:avoid}@page{size:A4 landscape;margin:12mm}}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

// ------------------------------------------------------------------------------------ 通报

/// The 通报 of a period: departments, townships and (with districts) districts ranked, the
/// office's and the coordinator's rows, each with the change against the previous period.
pub struct Report {
    pub period: Period,
    pub previous: Period,
    pub sections: Vec<(StatsDimension, Vec<RankedRow>)>,
}

pub fn report(state: &Shared, period: Period) -> Result<Report, ApiError> {
    let previous = period.previous();
    let mut sections = Vec::new();
    let mut dimensions = vec![StatsDimension::Department, StatsDimension::Township];
    // With districts, the 通报 ranks them too.
    if !state.org.districts.is_empty() {
        dimensions.push(StatsDimension::District);
    }
    dimensions.extend([StatsDimension::Office, StatsDimension::Coordinator]);
    for dimension in dimensions {
        let now = rows(state, dimension, period.from, period.to)?;
        let before: BTreeMap<String, StatsCell> =
            rows(state, dimension, previous.from, previous.to)?.into_iter().collect();
        sections.push((dimension, rank(now, &before)));
    }
    Ok(Report { period, previous, sections })
}

impl Report {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "kind": self.period.kind.as_str(),
            "period": self.period.label,
            "title": self.period.title(),
            "from": self.period.from,
            "to": self.period.to,
            "previous": { "period": self.previous.label, "from": self.previous.from, "to": self.previous.to },
        });
        for (dimension, rows) in &self.sections {
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let mut row = row_json(&r.unit, &r.cell);
                    row["rank"] = json!(r.rank);
                    row["change"] = json!({
                        "response_rate": r.change[0],
                        "resolution_rate": r.change[1],
                        "satisfaction_rate": r.change[2],
                    });
                    row
                })
                .collect();
            out[format!("{}s", dimension.as_str())] = json!(rows);
        }
        out
    }

    pub fn tables(&self) -> Vec<(&'static str, Table)> {
        self.sections.iter().map(|(dimension, rows)| (dimension.label_zh(), ranked_table(*dimension, rows))).collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    period: Option<String>,
    format: Option<String>,
}

/// `GET /v1/reports/{monthly|weekly}?period=`: supervisors and admins. Without a period, the
/// last whole one.
pub async fn period_report(
    State(state): State<Shared>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    query: QueryResult<ReportQuery>,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    if !matches!(actor.role, Role::Supervisor | Role::Admin) {
        return Err(super::refuse(&state, &actor, "read the 通报"));
    }
    let kind = PeriodKind::parse(&kind)
        .ok_or_else(|| ApiError::not_found(format!("no report {kind:?}: monthly or weekly")))?;
    let q = parse_query(query)?;
    let format = Format::of(q.format.as_deref(), &headers)?;
    let period = match q.period.as_deref() {
        Some(text) => Period::parse(kind, text).map_err(ApiError::invalid)?,
        None => last_whole_period(kind, state.clock.now()),
    };
    let report = report(&state, period)?;
    let name = format!("三率通报-{}", report.period.label);
    match format {
        Format::Json => Ok(Json(report.to_json()).into_response()),
        Format::Csv => {
            let tables = report.tables();
            let titled: Vec<(Option<&str>, &Table)> = tables.iter().map(|(title, t)| (Some(*title), t)).collect();
            Ok(csv_download(&titled, &format!("{name}.csv")))
        }
        Format::Xlsx => Ok(download(xlsx(&report.tables())?, XLSX, &format!("{name}.xlsx"))),
        Format::Html => {
            let subtitle = format!(
                "统计期间：{} 至 {}（按立案日期，北京时间）；对比上期：{} 至 {}",
                report.period.from, report.period.to, report.previous.from, report.previous.to
            );
            Ok(html_page(&report.period.title(), Some(&subtitle), &report.tables()))
        }
    }
}
