//! The tasks' output as the managers keep it for `service logs`: nodes ship their tasks' new
//! lines with each heartbeat, and the leader keeps the last lines of each task in memory
//! (bounded per task and in all). A new leader starts empty and fills from the next
//! heartbeats: logs are a convenience, not replicated state.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Lines kept per task.
pub const LINES_PER_TASK: usize = 1000;
/// Tasks whose lines are kept; the ones that were quiet longest go first.
pub const MAX_TASKS: usize = 10_000;
/// Longest line kept (bytes); longer ones are cut.
pub const MAX_LINE: usize = 16 * 1024;

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub task_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds, the node's clock.
    pub at: String,
    pub line: String,
}

/// The last lines of each task.
#[derive(Debug, Default)]
pub struct LogBook {
    tasks: BTreeMap<String, (u64, VecDeque<LogLine>)>,
    /// Counts additions, so the least recently written task can be found.
    clock: u64,
}

impl LogBook {
    /// Adds lines (in order) from a node.
    pub fn add(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        for mut l in lines {
            if l.line.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !l.line.is_char_boundary(cut) {
                    cut -= 1;
                }
                l.line.truncate(cut);
            }
            self.clock += 1;
            let entry = self
                .tasks
                .entry(l.task_id.clone())
                .or_insert_with(|| (0, VecDeque::new()));
            entry.0 = self.clock;
            if entry.1.len() == LINES_PER_TASK {
                entry.1.pop_front();
            }
            entry.1.push_back(l);
        }
        while self.tasks.len() > MAX_TASKS {
            let oldest = self
                .tasks
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.tasks.remove(&id),
                None => break,
            };
        }
    }

    /// The lines of these tasks, each task's in order, tasks in the order given.
    pub fn lines<'a>(&'a self, task_ids: &'a [String]) -> impl Iterator<Item = &'a LogLine> + 'a {
        task_ids
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .flat_map(|(_, lines)| lines.iter())
    }

    /// Forgets a task's lines.
    pub fn forget(&mut self, task_id: &str) {
        self.tasks.remove(task_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(task: &str, n: usize) -> LogLine {
        LogLine {
            task_id: task.into(),
            stream: "stdout".into(),
            at: String::new(),
            line: format!("line {n}"),
        }
    }

    #[test]
    fn keeps_the_last_lines_of_each_task_and_cuts_long_ones() {
        let mut book = LogBook::default();
        book.add((0..LINES_PER_TASK + 5).map(|n| line("a", n)));
        book.add([line("b", 0)]);
        let ids = ["a".to_string(), "b".to_string()];
        let got: Vec<&str> = book.lines(&ids).map(|l| l.line.as_str()).collect();
        assert_eq!(got.len(), LINES_PER_TASK + 1);
        assert_eq!(got[0], "line 5");
        assert_eq!(got[LINES_PER_TASK], "line 0");
        let mut long = line("c", 0);
        long.line = "é".repeat(MAX_LINE);
        book.add([long]);
        let c = ["c".to_string()];
        let kept = &book.lines(&c).next().unwrap().line;
        assert!(kept.len() <= MAX_LINE && kept.starts_with('é'));
    }

    #[test]
    fn the_quietest_task_goes_first_when_too_many_are_kept() {
        let mut book = LogBook::default();
        for n in 0..MAX_TASKS {
            book.add([line(&format!("t{n}"), 0)]);
        }
        book.add([line("t0", 1)]);
        book.add([line("new", 0)]);
        assert_eq!(book.tasks.len(), MAX_TASKS);
        assert!(book.tasks.contains_key("t0"));
        assert!(!book.tasks.contains_key("t1"));
    }
}
