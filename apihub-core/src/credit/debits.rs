//! Debits: a settled request's durable effect, queued in the book until the writer persists it
//! and tells the book.

use std::sync::Arc;

use crate::money::Money;
use crate::policy::KeyId;
use crate::user::UserId;

use super::{CreditBook, MeterId, add3, sub3};

/// A settled request's durable effect: what the writer debits the user and adds to the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debit {
    /// Queue order, from 1.
    pub seq: u64,
    /// Whose balance.
    pub user_id: UserId,
    /// Which key's counters.
    pub key_id: KeyId,
    /// The request id: the ledger row's order number. Shared, as the whole debit is: the queue,
    /// the writer's copy of a batch and the ledger row hold it without copying it.
    pub request_id: Arc<str>,
    /// The charge (never negative); a ledger row is written when it is above zero.
    pub charge: Money,
    /// Tokens used.
    pub tokens: i64,
    /// Whether the call succeeded (counts down `remaining_calls`).
    pub success: bool,
    /// The ledger row's text.
    pub description: Arc<str>,
    /// How much of the charge exceeded the hold.
    pub overage: Money,
    /// The budget windows the request counts in (credit, tokens and, when it succeeded, a call).
    pub meters: Vec<MeterId>,
}

impl CreditBook {
    /// The oldest `max` queued debits, to write; they stay queued until [`Self::written`].
    pub fn to_write(&self, max: usize) -> Vec<Debit> {
        let mut batch = Vec::new();
        self.to_write_into(max, &mut batch);
        batch
    }

    /// [`Self::to_write`] into `batch`, emptied first: a writer keeps one buffer for every batch.
    pub fn to_write_into(&self, max: usize, batch: &mut Vec<Debit>) {
        batch.clear();
        batch.extend(self.queue.iter().take(max).cloned());
    }

    /// The writer persisted `debits` (the oldest queued, in order): they move from unwritten to
    /// stored.
    pub fn written(&mut self, debits: &[Debit]) {
        for debit in debits {
            match self.queue.front() {
                Some(front) if front.seq == debit.seq => {
                    self.queue.pop_front();
                }
                // Not the queue's head: written already, or never queued here.
                _ => continue,
            }
            let charge = debit.charge.micros();
            if let Some(user) = self.users.get_mut(&debit.user_id) {
                user.stored = user.stored.saturating_sub(charge);
                user.unwritten -= charge;
            }
            if let Some(key) = self.keys.get_mut(&debit.key_id) {
                let stored = &mut key.stored;
                stored.quota_used = Money::from_micros(stored.quota_used.micros().saturating_add(charge));
                stored.tokens_used = stored.tokens_used.saturating_add(debit.tokens);
                if debit.success {
                    stored.remaining_calls = stored.remaining_calls.map(|left| (left - 1).max(0));
                }
                key.unwritten.quota -= charge;
                key.unwritten.tokens -= debit.tokens;
                key.unwritten.calls -= i64::from(debit.success);
            }
            let counted = [charge, debit.tokens, i64::from(debit.success)];
            for id in &debit.meters {
                if let Some(meter) = self.meters.get_mut(id) {
                    add3(&mut meter.stored.used, counted);
                    sub3(&mut meter.unwritten, counted);
                }
            }
        }
    }
}
