//! Provenance: the ledger, not the lister, says where a listed model came from.
//!
//! ```text
//! Arena    (task, round): the round is settled and has a winner (the best original, validly
//!          scored submission of a round whose validation set was revealed);
//!          lister = task creator or the winning trainer;
//!          score = the winner's consensus score; validators = those who revealed a score for it
//! Alliance (task, round): the round is decided and accepted;
//!          lister = task creator or a member drawn in that round;
//!          score = the majority voters' median score; validators = the voters rewarded
//! ```

use super::types::{Product, Provenance, ProvenanceClaim};
use crate::{alliance::MemberRole, arena::Score, error::TxError, state::State};
use flock_primitives::Address;
use std::collections::BTreeSet;

impl State {
    /// Checks `claim` against the ledger's records for `lister` and returns the full
    /// provenance. Errors: [`TxError::ProvenanceNotFound`] when no such settled (Arena) or
    /// accepted (Alliance) round with a model exists, [`TxError::NotProvenanceParty`] when
    /// the lister had no part in it.
    pub fn market_provenance(
        &self,
        lister: &Address,
        claim: &ProvenanceClaim,
    ) -> Result<Provenance, TxError> {
        match claim.product {
            Product::Arena => self.arena_provenance(lister, claim),
            Product::Alliance => self.alliance_provenance(lister, claim),
        }
    }

    fn arena_provenance(
        &self,
        lister: &Address,
        claim: &ProvenanceClaim,
    ) -> Result<Provenance, TxError> {
        let (task_id, round) = (claim.task, claim.round);
        let not_found = |why: &str| {
            TxError::ProvenanceNotFound(format!("AI Arena task {task_id} round {round}: {why}"))
        };
        let task = self.arena_tasks.get(&task_id).ok_or_else(|| not_found("no such task"))?;
        let result = self
            .arena_results
            .get(&(task_id, round))
            .ok_or_else(|| not_found("the round is not settled"))?;
        let winner = result
            .ranking
            .first()
            .filter(|w| {
                result.validation_revealed && w.duplicate_of.is_none() && w.score != Score::WORST
            })
            .ok_or_else(|| not_found("the round has no winner"))?;
        if *lister != task.creator && *lister != winner.node {
            return Err(TxError::NotProvenanceParty { task: task_id, round });
        }
        let assigned = self
            .arena_assignments
            .get(&(task_id, round, winner.submission))
            .cloned()
            .unwrap_or_default();
        let validators: BTreeSet<Address> = assigned
            .into_iter()
            .filter(|v| self.arena_scores.contains(&(task_id, round, winner.submission, *v)))
            .collect();
        Ok(Provenance {
            product: Product::Arena,
            task: task_id,
            round,
            score: Some(winner.score.0),
            validators: validators.into_iter().collect(),
            model: Some(winner.artifact),
        })
    }

    fn alliance_provenance(
        &self,
        lister: &Address,
        claim: &ProvenanceClaim,
    ) -> Result<Provenance, TxError> {
        let (task_id, round) = (claim.task, claim.round);
        let not_found = |why: &str| {
            TxError::ProvenanceNotFound(format!("FL Alliance task {task_id} round {round}: {why}"))
        };
        let task = self.alliance_tasks.get(&task_id).ok_or_else(|| not_found("no such task"))?;
        let decided = self
            .alliance_rounds
            .get(&(task_id, round))
            .ok_or_else(|| not_found("the round is not decided"))?;
        if !decided.accepted || decided.adopted.is_none() {
            return Err(not_found("the round was rejected"));
        }
        let members = self.alliance_draws.get(&(task_id, round)).map(|d| d.members.as_slice());
        let members = members.unwrap_or_default();
        let drawn = |a: &Address| members.iter().any(|m| m.0 == *a);
        if *lister != task.creator && !drawn(lister) {
            return Err(TxError::NotProvenanceParty { task: task_id, round });
        }
        let voter = |a: &Address| members.iter().any(|m| m.0 == *a && m.2 == MemberRole::Voter);
        let validators: BTreeSet<Address> = decided
            .rewards
            .iter()
            .filter(|(a, pay)| !pay.is_zero() && voter(a))
            .map(|(a, _)| *a)
            .collect();
        Ok(Provenance {
            product: Product::Alliance,
            task: task_id,
            round,
            score: decided.score,
            validators: validators.into_iter().collect(),
            model: decided.adopted,
        })
    }
}
