//! Output: tables for people, JSON for machines, colour only on a terminal.

use std::io::{Read, Write};

use crate::safe::{display, display_lines};

/// The mask shown instead of a value. Fixed width, so that it does not reveal the length.
pub(crate) const MASK: &str = "********";

/// The process's streams, or buffers in tests.
pub struct Io<'a> {
    /// Where a value for `put` is read from when it is not a terminal.
    pub stdin: &'a mut dyn Read,
    /// Results: tables or JSON.
    pub stdout: &'a mut dyn Write,
    /// Progress, warnings and errors.
    pub stderr: &'a mut dyn Write,
    /// Whether stdin is a terminal (then `put` prompts without echo instead of reading it).
    pub stdin_tty: bool,
    /// Whether stdout is a terminal (colour, confirmations).
    pub stdout_tty: bool,
    /// Whether stderr is a terminal (progress bars).
    pub stderr_tty: bool,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("stdin_tty", &self.stdin_tty)
            .field("stdout_tty", &self.stdout_tty)
            .field("stderr_tty", &self.stderr_tty)
            .finish_non_exhaustive()
    }
}

/// The output context of one command.
pub(crate) struct Ui<'a, 'b> {
    pub io: &'a mut Io<'b>,
    pub json: bool,
    pub color: bool,
}

/// A colour for a table cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
    Dim,
}

impl Ui<'_, '_> {
    /// Writes a line to stdout; a closed pipe (`skm list | head`) is not an error worth reporting.
    pub fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.io.stdout, "{}", s.as_ref());
    }

    /// Writes a note to stderr. Names in it may come from a backend, so control characters are escaped.
    pub fn note(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.io.stderr, "{}", display_lines(s.as_ref()));
    }

    /// Writes a warning to stderr, escaped as [`Ui::note`] is.
    pub fn warn(&mut self, s: impl AsRef<str>) {
        self.labelled("warning:", Tone::Warn, s.as_ref());
    }

    /// Writes `label` (coloured) and `s` (escaped) to stderr.
    pub fn labelled(&mut self, label: &str, tone: Tone, s: &str) {
        let label = self.paint(label, tone);
        let _ = writeln!(self.io.stderr, "{label} {}", display_lines(s));
    }

    /// Writes JSON to stdout.
    pub fn json(&mut self, v: &serde_json::Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
        let _ = writeln!(self.io.stdout, "{text}");
    }

    /// `s` in the colour of `tone` (when colour is on), its own control characters escaped, so that only
    /// the colour codes added here reach the terminal.
    pub fn paint(&self, s: &str, tone: Tone) -> String {
        let s = &*display(s);
        if !self.color {
            return s.to_string();
        }
        let code = match tone {
            Tone::Plain => return s.to_string(),
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "31",
            Tone::Dim => "2",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    }

    /// Prints a table: a header and rows of (text, tone) cells, columns padded to their widest cell.
    ///
    /// Cells hold names read from backends and files: their control characters are escaped.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<(String, Tone)>]) {
        let rows: Vec<Vec<(String, Tone)>> = rows
            .iter()
            .map(|r| r.iter().map(|(c, t)| (display(c).into_owned(), *t)).collect())
            .collect();
        let rows = &rows;
        let cols = header.len();
        let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, (cell, _)) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let render = |cells: Vec<(String, Tone)>, ui: &Self| {
            let mut line = String::new();
            for (i, (cell, tone)) in cells.into_iter().enumerate() {
                let pad = width[i].saturating_sub(cell.chars().count());
                line.push_str(&ui.paint(&cell, tone));
                if i + 1 < cols {
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line.trim_end().to_string()
        };
        let head = render(header.iter().map(|h| (h.to_uppercase(), Tone::Dim)).collect(), self);
        self.line(head);
        for row in rows {
            let line = render(row.clone(), self);
            self.line(line);
        }
    }
}

/// Whether to colour: a terminal, `--no-color` not given, and `NO_COLOR` unset (<https://no-color.org>).
pub(crate) fn use_color(stdout_tty: bool, no_color_flag: bool) -> bool {
    stdout_tty && !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Reads a value from stdin (exactly one trailing `\n` or `\r\n` removed unless `keep_newline`) or, on a
/// terminal, a hidden prompt.
pub(crate) fn read_value(io: &mut Io<'_>, what: &str, keep_newline: bool) -> Result<String, String> {
    if io.stdin_tty {
        let first =
            rpassword::prompt_password(format!("{what} (hidden): ")).map_err(|e| format!("cannot prompt: {e}"))?;
        let again = rpassword::prompt_password("again: ").map_err(|e| format!("cannot prompt: {e}"))?;
        if first != again {
            return Err("the two entries differ; nothing was written".into());
        }
        return Ok(first);
    }
    let mut buf = String::new();
    io.stdin
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
    // `echo value |` ends the input with one newline that is not part of the value; a second one is.
    if !keep_newline && buf.ends_with('\n') {
        buf.pop();
        if buf.ends_with('\r') {
            buf.pop();
        }
    }
    Ok(buf)
}

/// Asks a yes/no question on the terminal; `false` unless the answer starts with `y`.
pub(crate) fn confirm(io: &mut Io<'_>, question: &str) -> bool {
    let _ = write!(io.stderr, "{question} [y/N] ");
    let _ = io.stderr.flush();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = io.stdin.read(&mut byte) {
        if byte[0] == b'\n' {
            break;
        }
        answer.push(byte[0]);
    }
    matches!(answer.iter().find(|b| !b.is_ascii_whitespace()), Some(b'y' | b'Y'))
}
