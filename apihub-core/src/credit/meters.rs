//! Budget windows in the book: what identifies a window, its stored row, and the book's
//! methods that load, grow, read and forget windows.

use crate::billing::{HoldRequest, ReservationId};
use crate::budget::{BudgetId, Period};

use super::{CreditBook, MeterEntry, add3};

/// A window of a periodic budget ([`crate::budget`]), as the book counts in it: the budget and
/// the window's bounds (Unix milliseconds; the start names it, the end follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterId {
    /// The budget.
    pub budget: BudgetId,
    /// The window's first instant.
    pub start: i64,
    /// The next window's first instant: when this one resets.
    pub end: i64,
}

/// A budget window as the store holds it: its limits and what it has used (credit in micros,
/// tokens, successful calls), and what a refusal tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMeter {
    /// `key` or `user`: whose budget.
    pub scope: &'static str,
    /// The budget's period.
    pub period: Period,
    /// Credit (micros), tokens and calls allowed; `None`, no limit.
    pub limits: [Option<i64>; 3],
    /// Credit (micros), tokens and calls used.
    pub used: [i64; 3],
}

/// The names of a budget's three limits, in the book's order.
pub const METER_LIMITS: [&str; 3] = ["credit", "tokens", "calls"];

impl CreditBook {
    /// Sets a budget window's stored row: on first use, or after the budget changed. A window
    /// that left the book while holds in it were open (its budget changed) comes back counting
    /// those holds and its unwritten debits: they close and are written against it.
    pub fn store_meter(&mut self, id: MeterId, stored: StoredMeter) {
        match self.meters.get_mut(&id) {
            Some(entry) => entry.stored = stored,
            None => {
                let mut reserved = [0; 3];
                for hold in self.holds.values().filter(|hold| hold.meters.contains(&id)) {
                    add3(&mut reserved, [hold.amount, hold.tokens, 1]);
                }
                let mut unwritten = [0; 3];
                for debit in self.queue.iter().filter(|debit| debit.meters.contains(&id)) {
                    add3(&mut unwritten, [debit.charge.micros(), debit.tokens, i64::from(debit.success)]);
                }
                self.meters.insert(id, MeterEntry { stored, unwritten, reserved, last_hold: 0 });
            }
        }
    }

    /// Whether a budget window is in the book.
    pub fn has_meter(&self, id: MeterId) -> bool {
        self.meters.contains_key(&id)
    }

    /// Forgets a budget window (its budget changed or went, or it ended). Its open holds and
    /// unwritten debits still close and write.
    pub fn forget_meter(&mut self, id: MeterId) {
        self.meters.remove(&id);
    }

    /// Forgets the windows that ended before `now` and that nothing holds or waits to write in.
    pub fn forget_ended_meters(&mut self, now: i64) {
        self.meters.retain(|id, entry| id.end > now || !entry.idle());
    }

    /// Forgets every window of the budgets `ids` (they changed or went).
    pub fn forget_budgets(&mut self, ids: &[BudgetId]) {
        self.meters.retain(|id, _| !ids.contains(&id.budget));
    }

    /// The budget windows in the book.
    pub fn meter_ids(&self) -> Vec<MeterId> {
        self.meters.keys().copied().collect()
    }

    /// A budget window's stored row, with what is unwritten added to its usage, and what is held.
    pub fn meter(&self, id: MeterId) -> Option<(StoredMeter, [i64; 3])> {
        self.meters.get(&id).map(|entry| {
            let mut stored = entry.stored;
            add3(&mut stored.used, entry.unwritten);
            (stored, entry.reserved)
        })
    }

    /// The first of `meters` (a request's windows, each with the row to store on first use) that
    /// is short of `hold`, with that row and how much it lacks (credit, tokens, calls); on first
    /// use, the whole hold. `None` when every window has room.
    pub fn meter_shortfall(
        &self,
        meters: &[(MeterId, StoredMeter)],
        hold: &HoldRequest,
    ) -> Option<(MeterId, StoredMeter, [i64; 3])> {
        let add = [hold.amount.micros().max(0), hold.tokens.max(0), 1];
        meters.iter().find_map(|(id, template)| match self.meter(*id) {
            None => Some((*id, *template, add)),
            Some((stored, held)) => {
                let lack: [i64; 3] = std::array::from_fn(|i| {
                    stored.limits[i].map_or(0, |limit| stored.used[i] + held[i] + add[i] - limit).max(0)
                });
                (lack != [0; 3]).then_some((*id, *template, lack))
            }
        })
    }

    /// Sets the limits of every window of a budget in the book (an administrator changed them).
    pub fn set_meter_limits(&mut self, budget: BudgetId, limits: [Option<i64>; 3]) {
        for (_, entry) in self.meters.iter_mut().filter(|(id, _)| id.budget == budget) {
            entry.stored.limits = limits;
        }
    }

    /// Adds to a budget window's limits (a lease grown), each only where the budget has that
    /// limit. Returns `false` when the window is not in the book.
    pub fn grant_meter(&mut self, id: MeterId, add: [i64; 3]) -> bool {
        let Some(entry) = self.meters.get_mut(&id) else { return false };
        for (limit, add) in entry.stored.limits.iter_mut().zip(add) {
            *limit = limit.map(|limit| limit.saturating_add(add));
        }
        true
    }

    /// What a window's open holds and unwritten debits still take: credit, tokens, calls.
    pub fn meter_commitments(&self, id: MeterId) -> Option<[i64; 3]> {
        self.meters.get(&id).map(|entry| {
            let mut taken = entry.reserved;
            add3(&mut taken, entry.unwritten);
            taken
        })
    }

    /// Budget windows with nothing held and nothing unwritten, with the newest hold taken on them.
    pub fn idle_meters(&self) -> Vec<(MeterId, ReservationId)> {
        self.meters.iter().filter(|(_, entry)| entry.idle()).map(|(id, entry)| (*id, entry.last_hold)).collect()
    }
}
