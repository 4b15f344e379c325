//! What the person at the dashboard is doing: which row is selected, which screen is up
//! (the main view, a task's log, a question waiting for y/n), and what each key asks
//! for. No I/O here: the loop (`mod.rs`) carries out the [`Action`] a key returns.
//!
//! The rows that can be selected, top to bottom: gates waiting for approval and tasks
//! whose agent waits for a person (what needs doing, first), the live workers, then every
//! task in plan order.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::logview::LogView;
use crate::journal::ControlAction;
use crate::model::SessionModel;
use crate::status::{GateState, WorkerStatus};

/// A row that can be selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A gate waiting for approval.
    Gate(String),
    /// A task (by index) whose agent waits for a person.
    Agent(usize),
    /// A live worker, by id.
    Worker(String),
    /// A task by index, in the list of all tasks.
    Task(usize),
}

/// What is on the screen.
#[derive(Debug)]
pub enum Screen {
    Main,
    Log(Box<LogView>),
    /// A question (`cancel task a? y/n`) and what `y` does.
    Confirm {
        question: String,
        then: Action,
    },
}

/// What a key asks the loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    /// Leave the view (`q`).
    Quit,
    /// Ctrl-C: what SIGINT means where the view runs.
    Interrupt,
    /// Ctrl-L: draw the whole screen anew (something else wrote on the terminal).
    Repaint,
    /// A control request for a task, as `orchestrator reassign|cancel` sends it.
    Control {
        action: ControlAction,
        task: String,
    },
    /// Approve a gate, as `orchestrator approve` does.
    Approve(String),
    /// Show a task's log.
    OpenLog(String),
}

/// The dashboard's state between frames.
#[derive(Debug)]
pub struct App {
    pub screen: Screen,
    /// The selected row (none: the first).
    pub sel: Option<Row>,
    /// Where the selection was in the list of rows, for when its row goes away.
    pub sel_index: usize,
    /// The first task shown in the tasks' list (kept so the selection stays visible).
    pub task_top: usize,
    /// The last thing to tell the person (a request's answer), shown in the footer.
    pub message: Option<String>,
}

/// Whether a worker is shown in the workers' panel (the dead ones are only counted).
pub fn shown(state: WorkerStatus) -> bool {
    matches!(
        state,
        WorkerStatus::Starting | WorkerStatus::Idle | WorkerStatus::Running
    )
}

/// The rows above the tasks' list: waiting gates, waiting agents, live workers.
pub fn top_rows(model: &SessionModel) -> Vec<Row> {
    let mut rows: Vec<Row> = model
        .gates()
        .iter()
        .filter(|g| g.state == GateState::Waiting)
        .map(|g| Row::Gate(g.gate.clone()))
        .collect();
    // An agent waits only while its task runs, so only live tasks need a look.
    rows.extend(
        model
            .live_tasks()
            .filter(|&i| model.tasks()[i].waiting())
            .map(Row::Agent),
    );
    rows.extend(
        model
            .workers()
            .iter()
            .filter(|w| shown(w.state))
            .map(|w| Row::Worker(w.id.clone())),
    );
    rows
}

impl Default for App {
    fn default() -> App {
        App {
            screen: Screen::Main,
            sel: None,
            sel_index: 0,
            task_top: 0,
            message: None,
        }
    }
}

impl App {
    /// The selected row's place in the list of all rows (`top` then every task).
    pub fn position(&self, top: &[Row], tasks: usize) -> usize {
        let found = match &self.sel {
            None => Some(0),
            Some(Row::Task(i)) if *i < tasks => Some(top.len() + i),
            Some(r) => top.iter().position(|t| t == r),
        };
        found
            .unwrap_or(self.sel_index)
            .min((top.len() + tasks).saturating_sub(1))
    }

    fn row_at(top: &[Row], i: usize) -> Row {
        match top.get(i) {
            Some(r) => r.clone(),
            None => Row::Task(i - top.len()),
        }
    }

    /// Move the selection by `by` rows (clamped to the list).
    fn step(&mut self, top: &[Row], tasks: usize, by: isize) {
        let n = top.len() + tasks;
        if n == 0 {
            return;
        }
        let at = self.position(top, tasks) as isize;
        let to = (at + by).clamp(0, n as isize - 1) as usize;
        self.sel = Some(Self::row_at(top, to));
        self.sel_index = to;
    }

    /// The task the selected row is about, if any (a worker's is the one it runs).
    pub fn selected_task(&self, model: &SessionModel, top: &[Row]) -> Option<String> {
        let tasks = model.tasks();
        match Self::row_at(top, self.position(top, tasks.len())) {
            Row::Agent(i) | Row::Task(i) => tasks.get(i).map(|t| t.id.clone()),
            Row::Worker(id) => model
                .workers()
                .iter()
                .find(|w| w.id == id)
                .and_then(|w| w.task.clone()),
            Row::Gate(_) => None,
        }
    }

    /// The gate `a` approves: the selected one, else the first waiting.
    fn gate(&self, model: &SessionModel, top: &[Row]) -> Option<String> {
        let tasks = model.tasks().len();
        if let Row::Gate(g) = Self::row_at(top, self.position(top, tasks)) {
            return Some(g);
        }
        top.iter().find_map(|r| match r {
            Row::Gate(g) => Some(g.clone()),
            _ => None,
        })
    }

    /// Ask a question (y/n) before an action, or say there is nothing to act on.
    fn confirm(&mut self, what: Option<(String, Action)>, nothing: &str) {
        match what {
            Some((question, then)) => self.screen = Screen::Confirm { question, then },
            None => self.message = Some(nothing.into()),
        }
    }

    /// Take a key; returns what the loop should do.
    pub fn key(&mut self, k: KeyEvent, model: &SessionModel) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) {
            match k.code {
                KeyCode::Char('c') => return Action::Interrupt,
                KeyCode::Char('l') => return Action::Repaint,
                _ => {}
            }
        }
        match std::mem::replace(&mut self.screen, Screen::Main) {
            Screen::Confirm { then, .. } => {
                if matches!(k.code, KeyCode::Char('y' | 'Y')) {
                    return then;
                }
                self.message = Some("not done".into());
                Action::None
            }
            Screen::Log(mut log) => {
                if log.key(k) {
                    self.screen = Screen::Log(log);
                }
                Action::None
            }
            Screen::Main => self.main_key(k, model),
        }
    }

    fn main_key(&mut self, k: KeyEvent, model: &SessionModel) -> Action {
        let top = top_rows(model);
        let tasks = model.tasks().len();
        let page = 10;
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.step(&top, tasks, -1),
            KeyCode::Down | KeyCode::Char('j') => self.step(&top, tasks, 1),
            KeyCode::PageUp => self.step(&top, tasks, -page),
            KeyCode::PageDown => self.step(&top, tasks, page),
            KeyCode::Home => self.step(&top, tasks, isize::MIN / 2),
            KeyCode::End => self.step(&top, tasks, isize::MAX / 2),
            KeyCode::Enter => match self.selected_task(model, &top) {
                Some(t) => return Action::OpenLog(t),
                None => self.message = Some("no task selected".into()),
            },
            KeyCode::Char('r') => match self.selected_task(model, &top) {
                Some(task) => {
                    return Action::Control {
                        action: ControlAction::Reassign,
                        task,
                    };
                }
                None => self.message = Some("no task selected to reassign".into()),
            },
            KeyCode::Char('c') => {
                let what = self.selected_task(model, &top).map(|task| {
                    let question = format!("cancel task {task} and what depends on it? y/n");
                    let then = Action::Control {
                        action: ControlAction::Cancel,
                        task,
                    };
                    (question, then)
                });
                self.confirm(what, "no task selected to cancel");
            }
            KeyCode::Char('a') => {
                let what = self
                    .gate(model, &top)
                    .map(|g| (format!("approve gate {g}? y/n"), Action::Approve(g)));
                self.confirm(what, "no gate waits for approval");
            }
            _ => {}
        }
        Action::None
    }
}
