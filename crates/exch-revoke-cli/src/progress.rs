//! While a job runs: every engine event is folded into the journal (written first), then
//! shown — progress bars per step and per server on a terminal, plain lines when piped,
//! one JSON object per line with `--progress json`.
//!
//! Test hook: `EXCH_REVOKE_TEST_PAUSE_AT=POINT` makes the tool stop (forever) at POINT so that
//! a test can kill it exactly there: `journal-written` (the journal names the password files,
//! none is written yet), `password-written` (every new password stored, no reset sent),
//! `reset-sent` (the first reset was answered, the journal does not know yet). The tool prints
//! `{"event":"paused","at":POINT}` on stderr when it stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use exch_remediate::{Action, Event, ManyPlan};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::journal::Journal;
use crate::output::{Out, ProgressMode};
use crate::render::step_name;

/// The environment variable of the test hook.
pub const PAUSE_ENV: &str = "EXCH_REVOKE_TEST_PAUSE_AT";

/// Stops forever at `point` when the test hook asks for it.
pub async fn pause_if_asked(point: &str) {
    if std::env::var(PAUSE_ENV).as_deref() == Ok(point) {
        eprintln!("{}", serde_json::json!({ "event": "paused", "at": point }));
        std::future::pending::<()>().await;
    }
}

struct Bars {
    multi: MultiProgress,
    steps: ProgressBar,
    directory: ProgressBar,
    servers: ProgressBar,
    in_flight: HashMap<String, ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Bars {
    fn new(plan: &ManyPlan) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let steps = multi.add(ProgressBar::new(plan.steps.len() as u64));
        steps.set_style(style("{spinner} {prefix:<10} [{bar:30}] {pos}/{len} {msg}"));
        steps.set_prefix("steps");
        steps.enable_steady_tick(Duration::from_millis(120));
        let changes = plan
            .resolved()
            .map(|u| u.actions.iter().filter(|a| !a.done_earlier).count() as u64)
            .sum();
        let directory = multi.add(ProgressBar::new(changes));
        directory.set_style(style("  {prefix:<10} [{bar:30}] {pos}/{len} {msg}"));
        directory.set_prefix("directory");
        directory.set_message("changes");
        let flushed = plan.servers.iter().filter(|s| s.is_flushed()).count() as u64;
        let servers = multi.add(ProgressBar::new(flushed));
        servers.set_style(style("  {prefix:<10} [{bar:30}] {pos}/{len} {msg}"));
        servers.set_prefix("servers");
        servers.set_message("flushed");
        Bars {
            multi,
            steps,
            directory,
            servers,
            in_flight: HashMap::new(),
        }
    }

    fn show(&mut self, event: &Event) {
        match event {
            Event::StepStarted { step } => self.steps.set_message(step_name(*step)),
            Event::StepFinished { step, ok } => {
                self.steps.inc(1);
                if !ok {
                    let _ = self
                        .multi
                        .println(format!("  {}: not everything succeeded", step_name(*step)));
                }
            }
            Event::ActionRecorded { record, .. } if !record.done_earlier => self.directory.inc(1),
            Event::ServerStarted { server } => {
                let bar = self
                    .multi
                    .insert_before(&self.servers, ProgressBar::new_spinner());
                bar.set_style(style("    {spinner} {prefix} {msg}"));
                bar.set_prefix(server.clone());
                bar.set_message("flushing…");
                bar.enable_steady_tick(Duration::from_millis(120));
                self.in_flight.insert(server.clone(), bar);
            }
            Event::ServerFinished { server, proven } => {
                if let Some(bar) = self.in_flight.remove(server) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.servers.inc(1);
                if !proven {
                    let _ = self.multi.println(format!("  {server}: NOT proven"));
                }
            }
            Event::Retry {
                target,
                attempt,
                error,
                ..
            } => {
                let _ = self.multi.println(format!(
                    "  retry {target} (attempt {attempt} failed): {error}"
                ));
            }
            Event::Warning { message } if !message.starts_with("SECURITY:") => {
                let _ = self.multi.println(format!("  warning: {message}"));
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.in_flight.drain() {
            bar.finish_and_clear();
        }
        self.steps.finish_and_clear();
        self.directory.finish_and_clear();
        self.servers.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Plain progress lines (`--progress bar` when stderr is not a terminal): no escape codes.
fn plain(out: &Out, event: &Event) {
    match event {
        Event::StepFinished { step, ok } => out.note(format!(
            "{}: {}",
            step_name(*step),
            if *ok {
                "done"
            } else {
                "done, not everything succeeded"
            }
        )),
        Event::ServerFinished {
            server,
            proven: false,
        } => out.note(format!("  {server}: NOT proven")),
        Event::Retry {
            target,
            attempt,
            error,
            ..
        } => out.note(format!(
            "  retry {target} (attempt {attempt} failed): {error}"
        )),
        Event::Warning { message } if !message.starts_with("SECURITY:") => out.warn(message),
        _ => {}
    }
}

/// Consumes the engine's events until the channel closes; returns the journal (with every
/// event folded in) when there is one.
pub async fn consume(
    mut rx: UnboundedReceiver<Event>,
    out: Out,
    plan: ManyPlan,
    mut journal: Option<(PathBuf, Journal)>,
) -> Option<(PathBuf, Journal)> {
    let mut bars = (out.draws_bars()).then(|| Bars::new(&plan));
    let mut reset_seen = false;
    while let Some(event) = rx.recv().await {
        if let Event::ActionRecorded { record, .. } = &event {
            if !reset_seen
                && record.action == Action::ResetPassword
                && record.outcome.is_some()
                && !record.done_earlier
            {
                reset_seen = true;
                pause_if_asked("reset-sent").await;
            }
        }
        // Journal first: once a line says a step is done, the journal knows it.
        if let Some((path, j)) = &mut journal {
            if j.record(&event) {
                if let Err(e) = j.save(path) {
                    out.warn(e.to_string());
                }
            }
        }
        match (out.progress(), &mut bars) {
            (ProgressMode::Json, _) => out.progress_json(&event),
            (ProgressMode::Bar, Some(b)) => b.show(&event),
            (ProgressMode::Bar, None) => plain(&out, &event),
            _ => {}
        }
    }
    if let Some(b) = &mut bars {
        b.finish();
    }
    journal
}
