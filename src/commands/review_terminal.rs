//! The terminal side of `recommendations review-session`: shows one recommendation (the facts
//! of `show`) and asks with dialoguer. Ctrl-C ends the process at once (dialoguer raises
//! SIGINT); every earlier decision was already committed by the loop.

use crate::commands::recommendations::print_item;
use crate::printer::Printer;
use crate::processors::taxonomy::Taxonomy;
use crate::recommendations::review::{Choice, ReviewItem, Reviewer};

pub struct TerminalReviewer<'a> {
    printer: &'a Printer,
    taxonomy: &'a Taxonomy,
}

impl<'a> TerminalReviewer<'a> {
    pub fn new(printer: &'a Printer, taxonomy: &'a Taxonomy) -> Self {
        Self { printer, taxonomy }
    }

    /// The label set for `modify`: every label the issue had, the proposal's and the
    /// taxonomy's, with the proposal's outcome ticked.
    fn pick_labels(&self, item: &ReviewItem) -> anyhow::Result<Option<Vec<String>>> {
        let rec = &item.rec;
        let mut options: Vec<String> = Vec::new();
        let mut push = |l: &str| {
            if !options.iter().any(|o| o.eq_ignore_ascii_case(l)) {
                options.push(l.to_string());
            }
        };
        for l in rec.labels_before.iter().chain(rec.add.iter()) {
            push(l);
        }
        for l in self.taxonomy.names() {
            push(l);
        }
        let after = rec.labels_after();
        let ticked: Vec<bool> = options
            .iter()
            .map(|o| after.iter().any(|a| a.eq_ignore_ascii_case(o)))
            .collect();
        let picked = dialoguer::MultiSelect::new()
            .with_prompt("Labels the issue should have (space toggles, enter accepts, esc cancels)")
            .items(&options)
            .defaults(&ticked)
            .interact_opt()
            .map_err(|e| anyhow::anyhow!("cannot ask: {e}"))?;
        Ok(picked.map(|idx| {
            idx.into_iter()
                .filter_map(|i| options.get(i).cloned())
                .collect()
        }))
    }
}

const ACTIONS: &[&str] = &[
    "approve",
    "reject",
    "modify (pick the labels)",
    "needs modification",
    "skip",
    "quit",
];

impl Reviewer for TerminalReviewer<'_> {
    fn review(
        &mut self,
        item: &ReviewItem,
        position: usize,
        total: usize,
    ) -> anyhow::Result<(Choice, Option<String>)> {
        print_item(
            self.printer,
            &item.rec,
            &item.labels,
            Some(&format!("\n── Recommendation {position}/{total} ──")),
        )?;
        loop {
            let pick = dialoguer::Select::new()
                .with_prompt(format!("{} ({position}/{total})", item.rec.issue_id))
                .items(ACTIONS)
                .default(0)
                .interact_opt()
                .map_err(|e| anyhow::anyhow!("cannot ask: {e}"))?;
            let choice = match pick {
                Some(0) => Choice::Approve,
                Some(1) => Choice::Reject,
                Some(2) => match self.pick_labels(item)? {
                    Some(set) => Choice::Modify(set),
                    None => continue,
                },
                Some(3) => Choice::NeedsModification,
                Some(4) => Choice::Skip,
                // Esc / q, or "quit".
                _ => Choice::Quit,
            };
            if matches!(choice, Choice::Skip | Choice::Quit) {
                return Ok((choice, None));
            }
            let note: String = dialoguer::Input::new()
                .with_prompt("Note (optional)")
                .allow_empty(true)
                .interact_text()
                .map_err(|e| anyhow::anyhow!("cannot ask: {e}"))?;
            return Ok((choice, Some(note)));
        }
    }
}
