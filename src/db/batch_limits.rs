//! What the batch queue needs from the database: the limits learned from a provider's
//! refusals (`batch_limits`), the tokens a model has enqueued at its provider (running parts of
//! every job), and splitting one part into smaller ones (docs/batch.md, "Provider queue
//! limits").

use duckdb::{params, OptionalExt};

use crate::db::batch_states::sql_list;
use crate::db::{Backend, BatchPart, Db, ItemStatus, PartStatus};

/// Limits learned for one provider and model (`None`: never refused for it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearnedLimits {
    pub enqueued_tokens: Option<i64>,
    pub max_requests: Option<i64>,
}

impl Db {
    pub fn batch_limits(&self, provider: Backend, model: &str) -> anyhow::Result<LearnedLimits> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT enqueued_tokens, max_requests FROM batch_limits
                 WHERE provider = ? AND model = ?",
                params![provider, model],
                |r| {
                    Ok(LearnedLimits {
                        enqueued_tokens: r.get(0)?,
                        max_requests: r.get(1)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Records a limit a refusal revealed; a known lower limit is kept.
    pub fn learn_batch_limits(
        &mut self,
        provider: Backend,
        model: &str,
        learned: LearnedLimits,
        source: &str,
    ) -> anyhow::Result<()> {
        self.conn()?.execute(
            "INSERT INTO batch_limits (provider, model, enqueued_tokens, max_requests, source, updated_at)
             VALUES (?, ?, ?, ?, ?, current_timestamp::TIMESTAMP)
             ON CONFLICT (provider, model) DO UPDATE SET
                 enqueued_tokens = CASE WHEN excluded.enqueued_tokens IS NULL THEN batch_limits.enqueued_tokens
                     ELSE least(coalesce(batch_limits.enqueued_tokens, excluded.enqueued_tokens), excluded.enqueued_tokens) END,
                 max_requests = CASE WHEN excluded.max_requests IS NULL THEN batch_limits.max_requests
                     ELSE least(coalesce(batch_limits.max_requests, excluded.max_requests), excluded.max_requests) END,
                 source = excluded.source, updated_at = excluded.updated_at",
            params![
                provider,
                model,
                learned.enqueued_tokens,
                learned.max_requests,
                source
            ],
        )?;
        Ok(())
    }

    /// Estimated prompt tokens of every part of `provider`/`model` jobs that sits in the
    /// provider's queue (submitted and not ended), whatever job it belongs to.
    pub fn enqueued_tokens(&self, provider: Backend, model: &str) -> anyhow::Result<i64> {
        let waiting: Vec<PartStatus> = PartStatus::ALL
            .iter()
            .copied()
            .filter(|s| !s.is_terminal() && !s.is_unsubmitted() && *s != PartStatus::Queued)
            .collect();
        let sql = format!(
            "SELECT coalesce(sum(coalesce(p.est_tokens, 0)), 0)::BIGINT
             FROM batch_parts p JOIN batch_jobs j ON j.job_id = p.job_id
             WHERE j.provider = ? AND j.model = ? AND p.provider_batch_id IS NOT NULL
               AND p.status IN ({})",
            sql_list(&waiting, PartStatus::as_str)
        );
        Ok(self
            .conn()?
            .query_row(&sql, params![provider, model], |r| r.get(0))?)
    }

    /// Replaces part `old` of a job by `new` parts holding its open items (contiguous custom id
    /// ranges `first..=last`), in one transaction. With `keep_old` the old part stays recorded
    /// (it exists at the provider); otherwise its row is deleted (it never got there).
    pub fn split_batch_part(
        &mut self,
        job_id: &str,
        old: i32,
        keep_old: bool,
        new: &[(BatchPart, String, String)],
    ) -> anyhow::Result<()> {
        let now = chrono::Utc::now().naive_utc();
        let open = sql_list(ItemStatus::OPEN, ItemStatus::as_str);
        let tx = self.conn_mut()?.transaction()?;
        if !keep_old {
            tx.execute(
                "DELETE FROM batch_parts WHERE job_id = ? AND part = ?",
                params![job_id, old],
            )?;
        }
        for (p, first, last) in new {
            super::batch_items::insert_new_part(&tx, p)?;
            tx.execute(
                &format!(
                    "UPDATE batch_items SET part = ?, status = 'pending', updated_at = ?
                     WHERE job_id = ? AND part = ? AND custom_id >= ? AND custom_id <= ?
                       AND status IN ({open})"
                ),
                params![p.part, now, job_id, old, first, last],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_limits_only_go_down() {
        let mut db = Db::open_in_memory().unwrap();
        let m = "openai:gpt-4o-mini";
        assert_eq!(
            db.batch_limits(Backend::OpenAi, m).unwrap(),
            LearnedLimits::default()
        );
        let l = |t: Option<i64>, r: Option<i64>| LearnedLimits {
            enqueued_tokens: t,
            max_requests: r,
        };
        db.learn_batch_limits(Backend::OpenAi, m, l(Some(2_000), None), "a")
            .unwrap();
        db.learn_batch_limits(Backend::OpenAi, m, l(Some(5_000), Some(40)), "b")
            .unwrap();
        assert_eq!(
            db.batch_limits(Backend::OpenAi, m).unwrap(),
            l(Some(2_000), Some(40))
        );
        db.learn_batch_limits(Backend::OpenAi, m, l(Some(1_000), Some(80)), "c")
            .unwrap();
        assert_eq!(
            db.batch_limits(Backend::OpenAi, m).unwrap(),
            l(Some(1_000), Some(40))
        );
        assert_eq!(db.enqueued_tokens(Backend::OpenAi, m).unwrap(), 0);
    }
}
