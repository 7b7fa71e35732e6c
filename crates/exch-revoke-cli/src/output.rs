//! [`Out`]: everything the tool prints. Text for people on stdout (tables, summaries),
//! notes, warnings and `SECURITY:` lines on stderr, JSON for scripts (`--json`, `--progress
//! json`), progress bars only on a terminal, colour only on a terminal and never with
//! `NO_COLOR`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::CliError;

/// How progress is shown while a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// Progress bars per step and per server when stderr is a terminal; nothing otherwise.
    #[default]
    Bar,
    /// One JSON object per line on stderr (every engine event), for scripts.
    Json,
    /// Nothing.
    None,
}

/// A style for [`Out::paint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Success (green).
    Good,
    /// Needs attention (yellow).
    Warn,
    /// Failure (red).
    Bad,
    /// Headings (bold).
    Bold,
    /// Less important (dim).
    Dim,
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// The tool's output. Cheap to clone: clones write to the same streams.
#[derive(Clone)]
pub struct Out {
    stdout: Sink,
    stderr: Sink,
    stdout_color: bool,
    stderr_color: bool,
    stderr_tty: bool,
    progress: ProgressMode,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("stdout_color", &self.stdout_color)
            .field("stderr_color", &self.stderr_color)
            .field("stderr_tty", &self.stderr_tty)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// Whether `NO_COLOR` asks for no colour (set and not empty, per no-color.org).
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Out {
    /// stdout and stderr of the process; colour where the stream is a terminal and `NO_COLOR`
    /// is not set (and `no_color` is false).
    pub fn stdio(progress: ProgressMode, no_color: bool) -> Out {
        let colors_allowed =
            !no_color && !no_color_env() && std::env::var("TERM").as_deref() != Ok("dumb");
        let stdout_tty = std::io::stdout().is_terminal();
        let stderr_tty = std::io::stderr().is_terminal();
        Out {
            stdout: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            stderr: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
            stdout_color: colors_allowed && stdout_tty,
            stderr_color: colors_allowed && stderr_tty,
            stderr_tty,
            progress,
        }
    }

    /// Output into two buffers (tests): no colour, no terminal.
    pub fn buffers(
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
        progress: ProgressMode,
    ) -> Out {
        Out {
            stdout: Arc::new(Mutex::new(stdout)),
            stderr: Arc::new(Mutex::new(stderr)),
            stdout_color: false,
            stderr_color: false,
            stderr_tty: false,
            progress,
        }
    }

    /// The progress mode.
    pub fn progress(&self) -> ProgressMode {
        self.progress
    }

    /// Whether progress bars are drawn (mode `bar` and stderr is a terminal).
    pub fn draws_bars(&self) -> bool {
        self.progress == ProgressMode::Bar && self.stderr_tty
    }

    /// Whether stdout gets colour.
    pub fn color(&self) -> bool {
        self.stdout_color
    }

    /// `text` in `style` when stdout gets colour; `text` otherwise.
    pub fn paint(&self, style: Style, text: &str) -> String {
        paint(self.stdout_color, style, text)
    }

    /// `text` in `style` when stderr gets colour.
    pub fn paint_err(&self, style: Style, text: &str) -> String {
        paint(self.stderr_color, style, text)
    }

    /// A line on stdout (results for people).
    pub fn line(&self, text: impl AsRef<str>) {
        write_line(&self.stdout, text.as_ref());
    }

    /// A line on stderr (what the tool is doing, notes).
    pub fn note(&self, text: impl AsRef<str>) {
        write_line(&self.stderr, text.as_ref());
    }

    /// `warning: …` on stderr.
    pub fn warn(&self, text: impl AsRef<str>) {
        let label = self.paint_err(Style::Warn, "warning:");
        write_line(&self.stderr, &format!("{label} {}", text.as_ref()));
    }

    /// `SECURITY: …` on stderr: an opt-out of a secure default, named on every run.
    pub fn security(&self, note: impl AsRef<str>) {
        let label = self.paint_err(Style::Bad, "SECURITY:");
        write_line(&self.stderr, &format!("{label} {}", note.as_ref()));
    }

    /// `error: …` on stderr.
    pub fn error(&self, err: &CliError) {
        let label = self.paint_err(Style::Bad, "error:");
        write_line(&self.stderr, &format!("{label} {err}"));
    }

    /// A table on stdout.
    pub fn table(&self, table: &Table) {
        let text = table.render(self.stdout_color);
        write_raw(&self.stdout, text.as_bytes());
    }

    /// `value` as pretty JSON on stdout (for `--json` without a file).
    pub fn json(&self, value: &impl Serialize) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::failed(None, format!("cannot encode JSON: {e}"), None))?;
        write_line(&self.stdout, &text);
        Ok(())
    }

    /// One `--progress json` line on stderr (compact JSON); nothing in other modes.
    pub fn progress_json(&self, value: &impl Serialize) {
        if self.progress == ProgressMode::Json {
            if let Ok(line) = serde_json::to_string(value) {
                write_line(&self.stderr, &line);
            }
        }
    }

    /// Flushes both streams.
    pub fn flush(&self) {
        for sink in [&self.stdout, &self.stderr] {
            if let Ok(mut w) = sink.lock() {
                let _ = w.flush();
            }
        }
    }
}

/// Writes `value` as pretty JSON to `path` (atomically: temporary file, fsync, rename).
pub fn write_json_file(path: &Path, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(None, format!("cannot encode JSON: {e}"), None))?;
    crate::fsutil::write_atomically(path, text.as_bytes())
        .map_err(|e| CliError::io(path, "write it", &e))
}

fn write_line(sink: &Sink, text: &str) {
    if let Ok(mut w) = sink.lock() {
        let _ = writeln!(w, "{text}");
    }
}

fn write_raw(sink: &Sink, bytes: &[u8]) {
    if let Ok(mut w) = sink.lock() {
        let _ = w.write_all(bytes);
    }
}

fn paint(on: bool, style: Style, text: &str) -> String {
    if !on {
        return text.to_owned();
    }
    let code = match style {
        Style::Good => "32",
        Style::Warn => "33",
        Style::Bad => "31",
        Style::Bold => "1",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A plain text table: a header row, then rows; columns padded to the widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<(String, Option<Style>)>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<I, S>(headers: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| (c.into(), None)).collect());
    }

    /// Adds a row whose cells may carry a style (colour only on a terminal).
    pub fn styled_row(&mut self, cells: Vec<(String, Option<Style>)>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text (every line ends with `\n`).
    pub fn render(&self, color: bool) -> String {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut width = vec![0usize; cols];
        for (i, h) in self.headers.iter().enumerate() {
            width[i] = width[i].max(h.chars().count());
        }
        for row in &self.rows {
            for (i, (c, _)) in row.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<(String, Option<Style>)> = self
            .headers
            .iter()
            .map(|h| (h.clone(), Some(Style::Bold)))
            .collect();
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, (cell, style)) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                let pad = if last {
                    0
                } else {
                    width[i].saturating_sub(cell.chars().count()) + 2
                };
                match style {
                    Some(s) => line.push_str(&paint(color, *s, cell)),
                    None => line.push_str(cell),
                }
                line.push_str(&" ".repeat(pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_and_has_no_escapes_without_colour() {
        let mut t = Table::new(["server", "pools"]);
        t.row(["ex1", "5"]);
        t.styled_row(vec![
            ("exchange-two".into(), Some(Style::Bad)),
            ("0".into(), None),
        ]);
        let text = t.render(false);
        assert_eq!(
            text,
            "server        pools\nex1           5\nexchange-two  0\n"
        );
        assert!(!text.contains('\x1b'));
        assert!(t.render(true).contains("\x1b[31mexchange-two\x1b[0m"));
    }
}
