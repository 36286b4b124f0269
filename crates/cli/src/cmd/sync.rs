//! `sapbridge sync customers FILE.csv|FILE.jsonl --key-column ID --map
//! name=NAME,city=CITY,…`: creates or updates an SAP customer for every row of a
//! file, through a relay.
//!
//! - A row whose `--number-column` holds an SAP customer number is an update
//!   (`PATCH`); any other row a create, sent with `Idempotency-Key:
//!   sync-customers-<key>` so that a row sent again (after a crash, a cut
//!   connection, a second run) creates one customer.
//! - At most `--concurrency` rows (default 4) are queued or running at once: a
//!   share of the agents' credits, so interactive flows sharing the system's agents
//!   wait behind at most that many. For a share the relay enforces, give the sync
//!   an API key of its own with `max_in_flight`: its `429` (and a full queue's or an
//!   absent agent's `503`) makes the row wait for `Retry-After` and go again, never
//!   fail.
//! - Every finished row is appended to a state file beside the input
//!   (`FILE.sync-state.jsonl`) as it finishes; a run started again (after Ctrl-C, a
//!   crash, a lost relay) skips the rows found there. Rows that failed in SAP are
//!   done (reported, not retried); rows that met a transport error are not, and go
//!   again next run.
//! - At the end, a report (`FILE.sync-report.csv`): key, action, SAP customer
//!   number, status, message — every row of every run.
//! - Progress: a bar on a terminal, a line every 10 % otherwise.
//!
//! Exit codes: 0 every row succeeded; 1 some failed in SAP (see the report); 4
//! interrupted (run again to resume); 5 the relay could not be reached; 64 usage.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use reqwest::{Method, Url};
use sapbridge_proto::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::{
    self, ClientArgs, EXIT_FAILED, EXIT_PENDING, EXIT_UNREACHABLE, Request, problem_line, usage,
};

/// The longest pause a `Retry-After` makes a row wait before it goes again.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Options of `sapbridge sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(subcommand)]
    what: SyncCommand,
}

/// What to synchronise.
#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Creates or updates an SAP customer for every row of a CSV (with a header
    /// row) or JSON-lines file.
    Customers(CustomerSync),
}

/// Options of `sapbridge sync customers`.
#[derive(Debug, Args)]
struct CustomerSync {
    /// The SAP system.
    system: String,
    /// The rows: `.csv` (first line: column names) or `.jsonl` (one object per
    /// line).
    file: PathBuf,
    /// The column that identifies a row (its idempotency key and its line in the
    /// state file and report).
    #[arg(long)]
    key_column: String,
    /// Customer fields from columns: `name=NAME,city=CITY,country=LAND` (the fields
    /// of `POST /v1/systems/{system}/customers`).
    #[arg(long, value_delimiter = ',', required = true)]
    map: Vec<String>,
    /// The column holding an existing SAP customer number: such rows are updates.
    #[arg(long)]
    number_column: Option<String>,
    /// Rows in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// The state file (default: FILE.sync-state.jsonl).
    #[arg(long)]
    state: Option<PathBuf>,
    /// The report (default: FILE.sync-report.csv).
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

/// What became of one row: a line of the state file and of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Done {
    key: String,
    /// `created`, `updated`.
    action: String,
    /// The SAP customer number (created or updated), when there is one.
    customer: Option<String>,
    /// `succeeded` or `failed`.
    status: String,
    /// SAP's message or the relay's problem, for a failed row.
    message: String,
}

/// A row to send.
struct Row {
    key: String,
    number: Option<String>,
    fields: Map<String, Value>,
}

/// Runs `sapbridge sync`; the process's exit code.
pub(crate) async fn run(args: SyncArgs) -> ExitCode {
    let SyncCommand::Customers(args) = args.what;
    let (base, key) = match client::resolve(&args.client) {
        Ok(found) => found,
        Err(message) => return usage(&message),
    };
    let rows = match read_rows(&args) {
        Ok(rows) => rows,
        Err(message) => return usage(&message),
    };
    match sync(&args, base, key, rows).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sapbridge: {error:#}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// Beside `file`: its name plus `suffix`.
fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    file.with_file_name(name)
}

/// The rows of the input, mapped; a usage error names the first bad one.
fn read_rows(args: &CustomerSync) -> Result<Vec<Row>, String> {
    let mut mapping = Vec::new();
    for pair in &args.map {
        let (field, column) = pair
            .split_once('=')
            .ok_or_else(|| format!("--map {pair:?} is not FIELD=COLUMN"))?;
        mapping.push((field.trim().to_owned(), column.trim().to_owned()));
    }
    let records = read_records(&args.file)?;
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(records.len());
    for (line, record) in records.into_iter().enumerate() {
        let text = |column: &str| -> Option<String> {
            match record.get(column) {
                Some(Value::String(s)) => Some(s.trim().to_owned()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            }
            .filter(|s| !s.is_empty())
        };
        let row_no = line + 1;
        let key = text(&args.key_column)
            .ok_or_else(|| format!("row {row_no} has no {:?}", args.key_column))?;
        if !seen.insert(key.clone()) {
            return Err(format!("row {row_no}: the key {key:?} appears twice"));
        }
        let mut fields = Map::new();
        for (field, column) in &mapping {
            if !record.contains_key(column) {
                return Err(format!(
                    "row {row_no} has no column {column:?} (--map {field}={column})"
                ));
            }
            if let Some(value) = text(column) {
                fields.insert(field.clone(), Value::String(value));
            }
        }
        let number = args.number_column.as_deref().and_then(text);
        rows.push(Row {
            key,
            number,
            fields,
        });
    }
    Ok(rows)
}

/// The input's records as column → value.
fn read_records(file: &Path) -> Result<Vec<Map<String, Value>>, String> {
    let shown = file.display();
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "csv" => {
            let mut reader = csv::Reader::from_path(file).map_err(|e| format!("{shown}: {e}"))?;
            let headers = reader
                .headers()
                .map_err(|e| format!("{shown}: {e}"))?
                .clone();
            let mut records = Vec::new();
            for record in reader.records() {
                let record = record.map_err(|e| format!("{shown}: {e}"))?;
                records.push(
                    headers
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                        .collect(),
                );
            }
            Ok(records)
        }
        "jsonl" | "ndjson" => {
            let reader = std::io::BufReader::new(
                std::fs::File::open(file).map_err(|e| format!("{shown}: {e}"))?,
            );
            let mut records = Vec::new();
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| format!("{shown}: {e}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(&line) {
                    Ok(Value::Object(map)) => records.push(map),
                    _ => return Err(format!("{shown} line {}: not a JSON object", i + 1)),
                }
            }
            Ok(records)
        }
        _ => Err(format!("{shown}: give a .csv or .jsonl file")),
    }
}

/// The rows the state file says are done.
fn read_state(path: &Path) -> anyhow::Result<HashMap<String, Done>> {
    let mut done = HashMap::new();
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        // A line cut by a crash mid-write is not a row done: it goes again.
        if let Ok(row) = serde_json::from_str::<Done>(&line) {
            done.insert(row.key.clone(), row);
        }
    }
    Ok(done)
}

/// The progress shown: a bar on a terminal, else a line every 10 %.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    next_line: u64,
}

impl Progress {
    fn new(total: u64, already: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(already);
            bar
        });
        Self {
            bar,
            total,
            done: already,
            next_line: already + total.div_ceil(10).max(1),
        }
    }

    fn row(&mut self, failed: u64) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if failed > 0 {
                bar.set_message(format!("{failed} failed"));
            }
        } else if self.done >= self.next_line || self.done == self.total {
            eprintln!(
                "sync: {}/{} rows done, {failed} failed",
                self.done, self.total
            );
            self.next_line = self.done + self.total.div_ceil(10).max(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Sends every row not done yet; writes the report; the exit code.
async fn sync(
    args: &CustomerSync,
    base: Url,
    key: Secret,
    rows: Vec<Row>,
) -> anyhow::Result<ExitCode> {
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| beside(&args.file, ".sync-state.jsonl"));
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| beside(&args.file, ".sync-report.csv"));
    let mut done = read_state(&state_path)?;
    let total = rows.len();
    let order: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    let todo: Vec<Row> = rows
        .into_iter()
        .filter(|r| !done.contains_key(&r.key))
        .collect();
    let already = total - todo.len();
    if already > 0 {
        eprintln!(
            "sync: resuming: {already} of {total} rows done before ({})",
            state_path.display()
        );
    }
    let mut state = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state_path)
        .with_context(|| format!("opening {}", state_path.display()))?;
    let http = client::http_client()?;
    let context = Arc::new((http, base, key, args.system.clone(), args.client.timeout));
    let interrupted = tokio_util::sync::CancellationToken::new();
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nsync: interrupted; finishing the rows in flight");
                interrupted.cancel();
            }
        });
    }
    let mut progress = Progress::new(total as u64, already as u64);
    let mut failed = done.values().filter(|d| d.status == "failed").count() as u64;
    let mut unreachable = None;
    let started = Instant::now();
    let stop = interrupted.clone();
    let mut results = futures_util::stream::iter(todo)
        .take_until(async move { stop.cancelled().await })
        .map(|row| {
            let context = Arc::clone(&context);
            async move { send_row(&context, row).await }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .boxed();
    let mut sent = 0usize;
    while let Some(result) = results.next().await {
        match result {
            Ok(row) => {
                let line = serde_json::to_string(&row)?;
                writeln!(state, "{line}").context("writing the state file")?;
                if row.status == "failed" {
                    failed += 1;
                }
                done.insert(row.key.clone(), row);
                progress.row(failed);
                sent += 1;
            }
            Err(error) => {
                // The relay is away: stop sending; the rows not done go next run.
                if unreachable.is_none() {
                    interrupted.cancel();
                }
                unreachable.get_or_insert(error);
            }
        }
    }
    drop(results);
    state.flush().context("writing the state file")?;
    progress.finish();
    let elapsed = started.elapsed();
    write_report(&report_path, &order, &done)?;
    let created = done
        .values()
        .filter(|d| d.status == "succeeded" && d.action == "created")
        .count();
    let updated = done
        .values()
        .filter(|d| d.status == "succeeded" && d.action == "updated")
        .count();
    eprintln!(
        "sync: {} of {total} rows done ({created} created, {updated} updated, {failed} failed); \
         {sent} this run in {:.1} s ({:.0} rows/s); report: {}",
        done.len(),
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64().max(0.001),
        report_path.display()
    );
    if let Some(error) = unreachable {
        eprintln!("sapbridge: {error:#}");
        eprintln!("sync: run the same command again to resume");
        return Ok(ExitCode::from(EXIT_UNREACHABLE));
    }
    if done.len() < total {
        eprintln!("sync: run the same command again to resume");
        return Ok(ExitCode::from(EXIT_PENDING));
    }
    Ok(if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Creates or updates one row's customer; `Err` only when the relay could not be
/// reached (or did not answer as the API does), so the row is not done.
async fn send_row(
    context: &(reqwest::Client, Url, Secret, String, u64),
    row: Row,
) -> anyhow::Result<Done> {
    let (http, base, key, system, timeout) = context;
    let (mut request, action) = match &row.number {
        Some(number) => (
            Request::to(Method::PATCH, &["systems", system, "customers", number])
                .map_err(anyhow::Error::msg)?,
            "updated",
        ),
        None => {
            let mut request = Request::to(Method::POST, &["systems", system, "customers"])
                .map_err(anyhow::Error::msg)?;
            request.idempotency_key = Some(format!("sync-customers-{}", row.key));
            (request, "created")
        }
    };
    request.body = Some(Value::Object(row.fields));
    let deadline = Instant::now() + Duration::from_secs(*timeout);
    let answer = loop {
        let answer = client::exchange(http, base, key, &request, deadline).await?;
        // Refused for now (the key's rate or calls in flight, a full queue, no
        // agent): nothing was stored; the row goes again after the pause asked.
        if matches!(answer.status.as_u16(), 429 | 503) {
            let pause = answer
                .retry_after
                .unwrap_or(Duration::from_secs(1))
                .min(MAX_PAUSE);
            if Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                continue;
            }
        }
        break answer;
    };
    if answer.location.is_some() {
        anyhow::bail!(
            "row {}: the call was still running after {timeout} s",
            row.key
        );
    }
    let ok = answer.status.is_success();
    let refused_for_now = answer.status.as_u16() == 429
        || (answer.status.is_server_error() && answer.status.as_u16() != 502);
    if !ok && refused_for_now {
        // Still refused at the deadline (429, 503), or a 500: not the row's fault;
        // it is not done and goes again next run.
        anyhow::bail!(
            "row {}: the relay answered {}: {}",
            row.key,
            answer.status,
            problem_line(&answer.body)
        );
    }
    Ok(Done {
        key: row.key,
        action: action.to_owned(),
        customer: answer
            .body
            .get("customer")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(row.number),
        status: if ok { "succeeded" } else { "failed" }.to_owned(),
        message: if ok {
            String::new()
        } else {
            problem_line(&answer.body)
        },
    })
}

/// A SAP message as a report cell a spreadsheet shows as text: one starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP's
/// advice on CSV injection; the message echoes data from the system).
fn inert(message: &str) -> std::borrow::Cow<'_, str> {
    if message.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{message}").into()
    } else {
        message.into()
    }
}

/// The report: one CSV line per row, in the input's order.
fn write_report(path: &Path, order: &[String], done: &HashMap<String, Done>) -> anyhow::Result<()> {
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    writer.write_record(["key", "action", "customer", "status", "message"])?;
    for key in order {
        match done.get(key) {
            Some(row) => writer.write_record([
                row.key.as_str(),
                row.action.as_str(),
                row.customer.as_deref().unwrap_or_default(),
                row.status.as_str(),
                &inert(&row.message),
            ])?,
            None => writer.write_record([key.as_str(), "", "", "pending", ""])?,
        }
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_a_spreadsheet_would_run_are_reported_as_text() {
        assert_eq!(inert("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(inert("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(inert("-1+1"), "'-1+1");
        assert_eq!(inert("Customer 1000 not found"), "Customer 1000 not found");
    }
}
