//! Drawing the dashboard from the session model: a header (the session, its state,
//! elapsed time, tasks done with a bar, whether its orchestrator lives), notes (files that
//! could not be read, malformed journal lines, a frozen or held session), what needs a
//! person (waiting gates and agents, highlighted), the live workers with their task,
//! attempt, elapsed time, progress, CPU and memory, the waves, the pools and gates, the
//! tasks in plan order, the newest lines the process wrote on its stderr (diverted while
//! the view is up), the journal's last events, and a footer (keys, or a question).
//!
//! Only what fits is drawn: the tasks' list builds the rows of its window, never all of
//! them (and [`tasks_shown`] tells the model which rows those are before a frame, so it
//! reads the files of the tasks it deferred), and counts come from the model, never from
//! a pass over the tasks. Every text
//! that comes from a file (a progress message, a log line) is cleaned of control
//! characters before it reaches the terminal.

use std::borrow::Cow;
use std::ops::Range;
use std::time::SystemTime;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table};

use super::app::{App, Row, Screen, shown, top_rows};
use super::logview::LogView;
use super::procs::Sampler;
use crate::model::SessionModel;
use crate::proto::{SessionState, TaskState};
use crate::status::{GateState, TaskView, WorkerStatus};

/// Styles, or none of their colours under `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    fn good(self) -> Style {
        self.fg(Color::Green)
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// What waits for a person: it must stand out, in colour or not.
    fn attention(self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }

    fn state(self, s: TaskState) -> Style {
        match s {
            TaskState::Running => self.fg(Color::Cyan),
            TaskState::Succeeded => self.good(),
            TaskState::Failed | TaskState::Lost => self.bad(),
            TaskState::Retrying => self.warn(),
            TaskState::Skipped | TaskState::Cancelled | TaskState::Excluded => self.dim(),
            TaskState::Pending => Style::new(),
        }
    }

    fn session(self, s: SessionState) -> Style {
        match s {
            SessionState::Succeeded | SessionState::RolledBack => {
                self.good().add_modifier(Modifier::BOLD)
            }
            SessionState::Failed | SessionState::RollbackFailed | SessionState::Interrupted => {
                self.bad()
            }
            SessionState::Running => self.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            _ => self.warn().add_modifier(Modifier::BOLD),
        }
    }
}

/// What a frame is drawn from besides the person's state.
pub struct View<'a> {
    pub model: &'a SessionModel,
    pub procs: &'a Sampler,
    pub theme: Theme,
    pub now: SystemTime,
    pub stderr: &'a Stderr,
}

/// How many of the newest lines on stderr the view shows.
pub const STDERR_SHOWN: usize = 4;

/// What the process wrote on its stderr while the view was up (`crate::stderr`): how many
/// lines, and the newest few, as written.
#[derive(Debug, Default, Clone)]
pub struct Stderr {
    pub count: u64,
    pub newest: Vec<String>,
}

/// One line of text from a file, safe to draw: escape sequences (which would drive the
/// terminal) are dropped, other control characters become spaces.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(strip(s, false))
    } else {
        Cow::Borrowed(s)
    }
}

/// A log line, safe to draw: escape sequences (colours, cursor moves) are dropped, tabs
/// go to the next multiple of 8, other control characters become `?`.
pub fn clean_log(s: &str) -> String {
    strip(s, true)
}

fn strip(s: &str, log: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => crate::text::skip_escape(&mut chars),
            '\t' if log => {
                let n = 8 - out.chars().count() % 8;
                out.extend(std::iter::repeat_n(' ', n));
            }
            '\r' if log => {}
            c if c.is_control() => out.push(if log { '?' } else { ' ' }),
            c => out.push(c),
        }
    }
    out
}

/// A bar `width` cells wide, `frac` of it full.
pub fn bar(frac: f64, width: usize) -> String {
    let full = ((frac.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let mut s = "█".repeat(full);
    s.push_str(&"░".repeat(width - full));
    s
}

/// A duration for people: `4.2s`, `3m05s`, `2h07m`.
pub fn dur(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

fn ms_between(from: &str, to: SystemTime) -> Option<u64> {
    let from = humantime::parse_rfc3339(from).ok()?;
    Some(to.duration_since(from).ok()?.as_millis() as u64)
}

/// `12:34:56` of an RFC 3339 time (as written: UTC).
fn clock(ts: &str) -> &str {
    ts.get(11..19).unwrap_or(ts)
}

/// How many lines each part of the main screen gets.
struct Heights {
    notes: u16,
    needs: u16,
    stderr: u16,
    workers: u16,
    waves: u16,
    pools: u16,
    tasks: u16,
    events: u16,
}

/// Where each part of the main screen goes, with what the parts share.
struct Layout {
    /// The rows above the tasks' list.
    top: Vec<Row>,
    notes: Vec<Line<'static>>,
    /// The selected row's place among `top` then the tasks.
    selected: usize,
    header: Rect,
    notes_area: Rect,
    needs: Rect,
    workers: Rect,
    waves: Rect,
    pools: Rect,
    tasks: Rect,
    stderr: Rect,
    events: Rect,
    footer: Rect,
}

/// The main screen's layout in `area`: each part its lines, what does not fit giving way.
fn layout(area: Rect, app: &App, v: &View) -> Layout {
    let m = v.model;
    let top = top_rows(m);
    let notes = notes(v);
    let needs = top
        .iter()
        .filter(|r| matches!(r, Row::Gate(_) | Row::Agent(_)))
        .count();
    let live_workers = top.len() - needs;
    let other_gates = m
        .gates()
        .iter()
        .filter(|g| g.state != GateState::Waiting)
        .count();
    let mut h = Heights {
        notes: notes.len().min(4) as u16,
        needs: if needs > 0 {
            1 + needs.min(6) as u16
        } else {
            0
        },
        workers: 2 + live_workers.clamp(1, 10) as u16,
        waves: if m.waves().is_empty() {
            0
        } else {
            1 + m.waves().len().min(5) as u16
        },
        pools: match m.resources().len() + other_gates {
            0 => 0,
            n => 1 + n.min(4) as u16,
        },
        tasks: 3,
        stderr: match v.stderr.newest.len() {
            0 => 0,
            n => 1 + n.min(STDERR_SHOWN) as u16,
        },
        events: 6,
    };
    // Header 2 and footer 1; what does not fit gives way, events first. The lines on
    // stderr go late: they are warnings, and not in the journal the other parts come from.
    let fixed = 3;
    let sum = |h: &Heights| {
        fixed + h.notes + h.needs + h.workers + h.waves + h.pools + h.tasks + h.stderr + h.events
    };
    for shrink in [0usize, 1, 2, 3, 4, 5, 6] {
        while sum(&h) > area.height {
            let part = match shrink {
                0 => &mut h.events,
                1 => &mut h.waves,
                2 => &mut h.pools,
                3 => &mut h.workers,
                4 => &mut h.needs,
                5 => &mut h.stderr,
                _ => &mut h.notes,
            };
            if *part == 0 {
                break;
            }
            *part = if *part <= 2 { 0 } else { *part - 1 };
        }
    }
    h.tasks = area.height.saturating_sub(sum(&h) - h.tasks);
    let mut y = area.y;
    let mut take = |n: u16| {
        let n = n.min(area.y + area.height - y);
        let r = Rect::new(area.x, y, area.width, n);
        y += n;
        r
    };
    Layout {
        selected: app.position(&top, m.tasks().len()),
        top,
        notes,
        header: take(2),
        notes_area: take(h.notes),
        needs: take(h.needs),
        workers: take(h.workers),
        waves: take(h.waves),
        pools: take(h.pools),
        tasks: take(h.tasks),
        stderr: take(h.stderr),
        events: take(h.events),
        footer: take(1),
    }
}

/// The tasks (by index) that a frame of `area` draws rows of, as [`draw`] will (the
/// list's window moved to keep the selection in view): the model reads their files
/// first where it deferred them.
pub fn tasks_shown(area: Rect, app: &mut App, v: &View) -> Range<usize> {
    if let Screen::Log(_) = &app.screen {
        return 0..0;
    }
    let l = layout(area, app, v);
    let selected = l.selected.checked_sub(l.top.len());
    task_window(l.tasks, app, selected, v.model.tasks().len())
}

pub fn draw(f: &mut Frame, app: &mut App, v: &View) {
    let area = f.area();
    if let Screen::Log(log) = &app.screen {
        draw_log(f, area, log, v.theme);
        return;
    }
    let l = layout(area, app, v);
    draw_header(f, l.header, v);
    f.render_widget(Paragraph::new(l.notes), l.notes_area);
    draw_needs(f, l.needs, v, &l.top, l.selected);
    draw_workers(f, l.workers, v, &l.top, l.selected);
    draw_waves(f, l.waves, v);
    draw_pools(f, l.pools, v);
    let sel_task = l.selected.checked_sub(l.top.len());
    draw_tasks(f, l.tasks, v, app, sel_task);
    draw_stderr(f, l.stderr, v);
    draw_events(f, l.events, v);
    draw_footer(f, l.footer, app, v.theme);
}

/// Whether the session reached an end (its orchestrator is then not expected to run).
fn finished(s: SessionState) -> bool {
    matches!(
        s,
        SessionState::Succeeded
            | SessionState::Failed
            | SessionState::Cancelled
            | SessionState::RolledBack
            | SessionState::RollbackFailed
    )
}

fn panel(title: String, theme: Theme) -> Block<'static> {
    Block::new()
        .borders(Borders::TOP)
        .border_style(theme.dim())
        .title(Span::styled(format!(" {title} "), theme.bold()))
}

fn draw_header(f: &mut Frame, area: Rect, v: &View) {
    let (m, t) = (v.model, v.theme);
    let state = m.state();
    let finished = finished(state);
    let end = match m.ended_at().and_then(|e| humantime::parse_rfc3339(e).ok()) {
        Some(e) if finished => e,
        _ => v.now,
    };
    let elapsed = m
        .created_at()
        .and_then(|c| ms_between(c, end))
        .map_or_else(|| "-".into(), dur);
    let id = m.session().id();
    let orch = if m.orchestrator_alive() {
        Span::styled("orchestrator alive", t.good())
    } else if finished {
        Span::styled("finished", t.dim())
    } else {
        Span::styled("ORCHESTRATOR IS DEAD", t.bad())
    };
    let first = Line::from(vec![
        Span::styled("maestro ", t.bold()),
        Span::raw(format!("{id}  ")),
        Span::styled(state.as_str(), t.session(state)),
        Span::raw(format!("  elapsed {elapsed}  ")),
        orch,
    ]);
    let total = m.tasks().len();
    let done = m.done();
    let frac = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let mut second = vec![
        Span::raw(format!("tasks {done}/{total} ")),
        Span::styled(bar(frac, 24), t.good()),
        Span::raw(format!(" {:>3.0}%", frac * 100.0)),
    ];
    for s in [
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Pending,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Lost,
        TaskState::Skipped,
        TaskState::Cancelled,
        TaskState::Excluded,
    ] {
        let n = m.count(s);
        if n > 0 {
            second.push(Span::raw("  "));
            second.push(Span::styled(format!("{n} {}", s.as_str()), t.state(s)));
        }
    }
    f.render_widget(Paragraph::new(vec![first, Line::from(second)]), area);
}

/// What the session says besides its tasks: unreadable files, malformed journal lines,
/// a freeze, held starts, a drain.
fn notes(v: &View) -> Vec<Line<'static>> {
    let (m, t) = (v.model, v.theme);
    let mut out: Vec<Line> = m
        .errors()
        .into_iter()
        .map(|e| Line::styled(format!("unreadable: {}", clean(&e)), t.bad()))
        .collect();
    if m.malformed() > 0 {
        out.push(Line::styled(
            format!("events.jsonl: {} malformed line(s) skipped", m.malformed()),
            t.warn(),
        ));
    }
    let id = m.session().id();
    if !m.orchestrator_alive() && !finished(m.state()) {
        out.push(Line::styled(
            format!(
                "its orchestrator is gone: `orchestrator resume {id}` carries on, `orchestrator cancel {id}` stops it"
            ),
            t.bad(),
        ));
    }
    match m.state() {
        SessionState::Frozen => out.push(Line::styled(
            format!(
                "frozen: running tasks are stopped where they are; `orchestrator thaw {id}` goes on"
            ),
            t.warn(),
        )),
        SessionState::Stopping => out.push(Line::styled(
            "stopping: no new starts; running tasks finish",
            t.warn(),
        )),
        _ => {}
    }
    if let Some((available, needed)) = m.history().held {
        out.push(Line::styled(
            format!(
                "new starts held: available memory {} is below min_free_memory {}",
                crate::plan::show_size(available),
                crate::plan::show_size(needed)
            ),
            t.warn(),
        ));
    }
    out
}

fn row_style(selected: bool, base: Style, theme: Theme) -> Style {
    if selected {
        base.patch(theme.selected())
    } else {
        base
    }
}

fn draw_needs(f: &mut Frame, area: Rect, v: &View, top: &[Row], selected: usize) {
    if area.height == 0 {
        return;
    }
    let t = v.theme;
    let mut lines = Vec::new();
    for (i, r) in top.iter().enumerate().take(area.height as usize - 1) {
        let text = match r {
            Row::Gate(g) => format!("gate {g} WAITS FOR APPROVAL (a approves)"),
            Row::Agent(ix) => {
                let task = &v.model.tasks()[*ix];
                let msg = task
                    .agent
                    .as_ref()
                    .and_then(|a| a.message.as_deref())
                    .map(|m| format!(": {}", clean(m)))
                    .unwrap_or_default();
                format!("{} agent WAITING{msg}", task.id)
            }
            _ => continue,
        };
        lines.push(Line::styled(
            text,
            row_style(i == selected, t.attention(), t),
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(panel("needs you".into(), t)),
        area,
    );
}

fn progress_text(task: &TaskView) -> String {
    match &task.progress {
        Some(p) => {
            let msg = p.message.as_deref().map(clean).unwrap_or_default();
            format!("{} {:>3.0}% {msg}", bar(p.pct / 100.0, 10), p.pct)
        }
        None => String::new(),
    }
}

fn draw_workers(f: &mut Frame, area: Rect, v: &View, top: &[Row], selected: usize) {
    if area.height == 0 {
        return;
    }
    let (m, t) = (v.model, v.theme);
    let gone = m.workers().iter().filter(|w| !shown(w.state)).count();
    let running = m
        .workers()
        .iter()
        .filter(|w| w.state == WorkerStatus::Running)
        .count();
    let live = m.workers().len() - gone;
    let title = format!(
        "workers: {running} running, {} other, {gone} gone",
        live - running
    );
    let mut rows = Vec::new();
    for (i, r) in top.iter().enumerate() {
        let Row::Worker(id) = r else { continue };
        let Some(w) = m.workers().iter().find(|w| &w.id == id) else {
            continue;
        };
        let task = w
            .task
            .as_deref()
            .and_then(|id| Some((m.task_index(id)?, id)))
            .map(|(ix, _)| ix);
        let cells: Vec<Cell> = match task {
            Some(ix) => {
                let tv = &m.tasks()[ix];
                let usage = m.started(ix).and_then(|st| v.procs.get(st.pid));
                vec![
                    Cell::from(w.id.clone()),
                    Cell::from(Span::styled(tv.id.clone(), t.state(tv.state))),
                    Cell::from(tv.attempt.to_string()),
                    Cell::from(tv.duration_ms.map_or_else(|| "-".into(), dur)),
                    Cell::from(progress_text(tv)),
                    Cell::from(
                        usage
                            .and_then(|u| u.cpu)
                            .map_or_else(|| "-".into(), |c| format!("{c:.0}%")),
                    ),
                    Cell::from(usage.map_or_else(
                        || "-".into(),
                        |u| crate::plan::show_size_rounded(u.rss_bytes),
                    )),
                ]
            }
            None => vec![
                Cell::from(w.id.clone()),
                Cell::from(Span::styled(w.state.as_str(), t.dim())),
            ],
        };
        rows.push(TableRow::new(cells).style(row_style(i == selected, Style::new(), t)));
    }
    if rows.is_empty() {
        let none = Line::styled("no live workers", t.dim());
        f.render_widget(Paragraph::new(none).block(panel(title, t)), area);
        return;
    }
    let header = TableRow::new([
        "WORKER", "TASK", "ATTEMPT", "ELAPSED", "PROGRESS", "CPU", "RSS",
    ])
    .style(t.bold());
    let widths = [
        Constraint::Length(8),
        Constraint::Length(20),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Min(16),
        Constraint::Length(5),
        Constraint::Length(9),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(panel(title, t)),
        area,
    );
}

fn draw_waves(f: &mut Frame, area: Rect, v: &View) {
    if area.height == 0 {
        return;
    }
    let t = v.theme;
    let waves = v.model.waves();
    let room = area.height as usize - 1;
    // The first wave not done, with the one before it for context.
    let first = waves
        .iter()
        .position(|w| w.done < w.tasks)
        .unwrap_or(waves.len())
        .saturating_sub(1)
        .min(waves.len().saturating_sub(room));
    let lines: Vec<Line> = waves
        .iter()
        .enumerate()
        .skip(first)
        .take(room)
        .map(|(i, w)| {
            let frac = if w.tasks == 0 {
                1.0
            } else {
                w.done as f64 / w.tasks as f64
            };
            let style = if w.done == w.tasks {
                t.good()
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::raw(format!("wave {:<4} ", i + 1)),
                Span::styled(bar(frac, 20), style),
                Span::raw(format!(" {}/{}", w.done, w.tasks)),
            ])
        })
        .collect();
    let title = format!("waves: {}", waves.len());
    f.render_widget(Paragraph::new(lines).block(panel(title, t)), area);
}

fn draw_pools(f: &mut Frame, area: Rect, v: &View) {
    if area.height == 0 {
        return;
    }
    let t = v.theme;
    let mut lines: Vec<Line> = v
        .model
        .resources()
        .iter()
        .map(|p| {
            let (level, style) = match p.level {
                crate::plan::Level::Normal => ("", t.good()),
                crate::plan::Level::Warn => ("  WARN", t.warn()),
                crate::plan::Level::Critical => ("  CRITICAL", t.bad()),
            };
            let frac = if p.max == 0 {
                0.0
            } else {
                p.used as f64 / p.max as f64
            };
            Line::from(vec![
                Span::raw(format!("pool {:<12} ", p.pool)),
                Span::styled(bar(frac, 20), style),
                Span::raw(format!(" {}/{}", p.used, p.max)),
                Span::styled(level, style),
            ])
        })
        .collect();
    for g in v
        .model
        .gates()
        .iter()
        .filter(|g| g.state != GateState::Waiting)
    {
        let state = serde_json::to_value(g.state)
            .ok()
            .and_then(|s| s.as_str().map(str::to_string))
            .unwrap_or_default();
        let reason = g
            .reason
            .as_deref()
            .map(|r| format!(": {}", clean(r)))
            .unwrap_or_default();
        lines.push(Line::raw(format!("gate {} {state}{reason}", g.gate)));
    }
    f.render_widget(
        Paragraph::new(lines).block(panel("pools and gates".into(), t)),
        area,
    );
}

/// A task's NOTE: why it ended, its agent, its progress, or its unreadable files.
fn note(task: &TaskView) -> String {
    if let Some(e) = &task.error {
        return format!("unreadable: {}", clean(e));
    }
    if let Some(a) = &task.agent
        && task.state == TaskState::Running
    {
        let msg = a
            .message
            .as_deref()
            .map(|m| format!(": {}", clean(m)))
            .unwrap_or_default();
        return format!("agent {}{msg}", a.state.as_str());
    }
    if task.progress.is_some() {
        return progress_text(task);
    }
    task.reason
        .as_deref()
        .map(|r| clean(r).into_owned())
        .unwrap_or_default()
}

/// The tasks (by index) the list in `area` has room for, its top first moved to keep the
/// selected task (if one is) in view.
fn task_window(area: Rect, app: &mut App, selected: Option<usize>, len: usize) -> Range<usize> {
    if area.height < 2 {
        return 0..0;
    }
    let room = (area.height - 2) as usize;
    if let Some(s) = selected {
        if s < app.task_top {
            app.task_top = s;
        } else if s >= app.task_top + room {
            app.task_top = s + 1 - room;
        }
    }
    app.task_top = app.task_top.min(len.saturating_sub(room));
    app.task_top..(app.task_top + room).min(len)
}

fn draw_tasks(f: &mut Frame, area: Rect, v: &View, app: &mut App, selected: Option<usize>) {
    if area.height < 2 {
        return;
    }
    let (m, t) = (v.model, v.theme);
    let tasks = m.tasks();
    let window = &tasks[task_window(area, app, selected, tasks.len())];
    let id_width = window
        .iter()
        .map(|t| t.id.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 32) as u16;
    let rows: Vec<TableRow> = window
        .iter()
        .enumerate()
        .map(|(k, task)| {
            let i = app.task_top + k;
            let cells = vec![
                Cell::from(task.id.clone()),
                Cell::from(Span::styled(task.state.as_str(), t.state(task.state))),
                Cell::from(match task.attempt {
                    0 => "-".into(),
                    n => n.to_string(),
                }),
                Cell::from(task.duration_ms.map_or_else(|| "-".into(), dur)),
                Cell::from(note(task)),
            ];
            let base = if task.waiting() {
                t.attention()
            } else {
                Style::new()
            };
            TableRow::new(cells).style(row_style(Some(i) == selected, base, t))
        })
        .collect();
    let header = TableRow::new(["TASK", "STATE", "ATTEMPT", "TIME", "NOTE"]).style(t.bold());
    let widths = [
        Constraint::Length(id_width),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let title = match tasks.len() {
        0 => "tasks".to_string(),
        n => format!(
            "tasks {}-{} of {n}",
            app.task_top + 1,
            app.task_top + window.len()
        ),
    };
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(panel(title, t)),
        area,
    );
}

/// The newest lines on stderr, oldest first, and that all of them are printed when the
/// view closes (a person may wonder where the rest went).
fn draw_stderr(f: &mut Frame, area: Rect, v: &View) {
    if area.height == 0 {
        return;
    }
    let t = v.theme;
    let room = area.height as usize - 1;
    let newest = &v.stderr.newest;
    let lines: Vec<Line> = newest[newest.len().saturating_sub(room)..]
        .iter()
        .map(|l| Line::styled(clean(l).into_owned(), t.warn()))
        .collect();
    let n = v.stderr.count;
    let title = format!(
        "stderr: {n} line{}, printed when the view closes",
        if n == 1 { "" } else { "s" }
    );
    f.render_widget(Paragraph::new(lines).block(panel(title, t)), area);
}

fn draw_events(f: &mut Frame, area: Rect, v: &View) {
    if area.height == 0 {
        return;
    }
    let room = area.height as usize - 1;
    let id = v.model.session().id();
    let mut lines: Vec<Line> = v
        .model
        .recent()
        .rev()
        .filter_map(|(ts, ev)| {
            let ev = ev?;
            let text = ev.describe(id).unwrap_or_else(|| brief(&ev));
            Some(Line::from(vec![
                Span::styled(format!("{} ", clock(ts.unwrap_or(""))), v.theme.dim()),
                Span::raw(clean(&text).into_owned()),
            ]))
        })
        .take(room)
        .collect();
    lines.reverse();
    f.render_widget(
        Paragraph::new(lines).block(panel("events".into(), v.theme)),
        area,
    );
}

/// An event no progress line describes, briefly.
fn brief(ev: &crate::journal::Event) -> String {
    use crate::journal::Event as E;
    match ev {
        E::TaskAssigned {
            task,
            attempt,
            worker,
            ..
        } => format!("{task}: assigned to {worker} (attempt {attempt})"),
        E::TaskWithdrawn { task, worker, .. } => format!("{task}: taken back from {worker}"),
        E::AttemptEnded {
            task,
            attempt,
            reason,
            ..
        } => format!("{task}: attempt {attempt} ended ({})", reason.as_str()),
        E::WorkerSpawned { worker, .. } => format!("worker {worker} started"),
        E::WorkerRegistered { worker, pid, .. } => format!("worker {worker} ready (pid {pid})"),
        E::WorkerExited { worker, .. } => format!("worker {worker} exited"),
        E::SessionStarted { tasks, workers, .. } => {
            format!("session started: {tasks} tasks, {workers} workers")
        }
        E::TasksAdded { tasks } => {
            let mut ids = tasks.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            if tasks.len() > 3 {
                ids.push_str(", ...");
            }
            format!("{} tasks added ({ids})", tasks.len())
        }
        E::SessionResumed { .. } => "session resumed".into(),
        E::SessionFinished { state, .. } => format!("session {}", state.as_str()),
        E::ControlRequest { action, task, .. } => match task {
            Some(t) => format!("request: {} {t}", action.as_str()),
            None => format!("request: {}", action.as_str()),
        },
        E::ResourceLevel {
            pool,
            level,
            used,
            max,
        } => format!("pool {pool}: {used}/{max} ({level:?})"),
        ev => {
            // Its kind, as the journal names it.
            let v = serde_json::to_value(ev).unwrap_or_default();
            v["event"].as_str().unwrap_or("event").replace('_', " ")
        }
    }
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App, t: Theme) {
    let line = match &app.screen {
        Screen::Confirm { question, .. } => Line::styled(question.clone(), t.attention()),
        _ => {
            let keys = "↑↓ select  ⏎ log  r reassign  c cancel  a approve  q quit";
            match &app.message {
                Some(m) => Line::from(vec![
                    Span::styled(clean(m).into_owned(), t.warn()),
                    Span::styled(format!("   {keys}"), t.dim()),
                ]),
                None => Line::styled(keys, t.dim()),
            }
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

fn draw_log(f: &mut Frame, area: Rect, log: &LogView, t: Theme) {
    let which = if log.stderr { "stderr" } else { "stdout" };
    let attempt = log
        .attempt
        .map_or_else(String::new, |n| format!(", attempt {n}"));
    let title = format!(
        "log of {}{attempt} ({which}) — ↑↓ PgUp PgDn scroll, e stdout/stderr, Esc back",
        log.task
    );
    let room = area.height.saturating_sub(1) as usize;
    let end = log.lines.len().saturating_sub(log.scroll);
    let start = end.saturating_sub(room);
    let mut lines: Vec<Line> = match &log.note {
        Some(n) if log.lines.is_empty() => vec![Line::styled(clean(n).into_owned(), t.dim())],
        _ => log.lines[start..end]
            .iter()
            .map(|l| Line::raw(l.as_str()))
            .collect(),
    };
    if log.scroll > 0 {
        lines.truncate(room);
    }
    f.render_widget(Paragraph::new(lines).block(panel(title, t)), area);
}
